"""What a run reports beside its submission: the summary table, the step plot, the official qa HTML report.

    python -m common.report outputs/flat/demo-cpu/metrics.json outputs/sequential/demo-cpu/metrics.json

prints one line per run (the final summary of `run_all.sh`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

from common.progress import Progress

ASPECTS = ("overall", "univariate", "bivariate", "trivariate", "coherence")


def summary_table(metrics: dict) -> str:
    """A few lines for the terminal: accuracy (raw pool vs submission), privacy, time per step."""
    acc, raw = metrics["accuracy"], metrics["accuracy_raw"]
    aspects = [a for a in ASPECTS if acc.get(a) is not None]
    lines = [f"== {metrics['challenge']} ({metrics['profile']}, seed {metrics['seed']}, {metrics['device']}): {metrics['submission']}",
             f"{'accuracy':<12}" + "".join(f"{a:>12}" for a in aspects),
             f"{'raw pool':<12}" + "".join(f"{raw[a]:>12.4f}" for a in aspects),
             f"{'submission':<12}" + "".join(f"{acc[a]:>12.4f}" for a in aspects)]
    if acc.get("overall_max") is not None:
        lines.append(f"{'holdout max':<12}" + "".join(f"{acc[a + '_max']:>12.4f}" for a in aspects))
    if metrics.get("gap_closed") is not None:
        lines.append(f"copy of training {metrics['accuracy_copy']:.4f} (the metric's ceiling): the submission closes "
                     f"{metrics['gap_closed']:.0%} of the gap between the holdout and it")
    lines.append(privacy_line(metrics["privacy"]))
    if metrics.get("models"):
        lines.append(models_line(metrics["models"]))
    if "qa_report" in metrics:
        qa = metrics["qa_report"]
        dcr = f"DCR share {qa['dcr_share']:.3f}" if qa["dcr_share"] is not None else f"no DCR share ({qa['note']})"
        lines.append(f"qa report (report.html, {qa['seconds']:.0f} s, outside the time budget): overall accuracy {qa['overall']}, {dcr} "
                     f"(distances on {qa['embedding_rows'] or 'all'} rows)")
    lines.append("seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in metrics["seconds"].items()) + f"; total {metrics['seconds_total']:.0f}")
    return "\n".join(lines)


def models_line(models: list[dict]) -> str:
    """The models trained: seeds, minutes, and what stopped them (a time limit: not reproducible; max_epochs: more
    epochs may give a better model)."""
    seeds = ", ".join(str(m["seed"]) for m in models)
    minutes = ", ".join(f"{m['seconds'] / 60:.1f}" if "seconds" in m else "?" for m in models)
    cut, capped = ([str(m["seed"]) for m in models if m.get("stopped_by") == reason] for reason in ("time limit", "max_epochs"))
    how = []
    if cut:
        how.append(f"the time limit stopped seed {', '.join(cut)} (not reproducible bit for bit)")
    if capped:
        how.append(f"seed {', '.join(capped)} reached max_epochs before its validation loss stopped falling (more epochs may help)")
    if not how:
        how = ["each stopped when its validation loss stopped falling" if all("stopped_by" in m for m in models) else
               "not recorded what stopped each"]
    return f"models: {len(models)} (seeds {seeds}), trained {minutes} min; {'; '.join(how)}"


def privacy_line(privacy: dict) -> str:
    """The privacy figures in one line; a figure that could not be computed says why."""
    by = [r["by"] for r in privacy.get("dcr_repairs") or []]
    repairs = ", ".join(f"{by.count(kind)} {name}" for kind, name in (("nearest", "rounds of nearest-unit swaps"), ("polish", "polish"))
                        if kind in by)
    dcr = (f"DCR share {privacy['dcr_share']:.3f} (limit {privacy['max_dcr_share']}, chance qa finds it over the limit "
           f"{privacy['dcr_risk']:.2%}" + (f"; repairs: {repairs})" if repairs else ")")
           if privacy.get("dcr_share") is not None else f"no DCR share ({privacy.get('dcr_note')})")
    nndr = (f"NNDR ratio {privacy['nndr_ratio']:.3f}" if privacy.get("nndr_ratio") is not None
            else f"no NNDR ratio ({privacy.get('nndr_note', privacy.get('dcr_note'))})")
    left_out = privacy.get("identifier_columns_left_out") or []
    return (f"privacy (against the {privacy['reference']}): {dcr}, {nndr}, identical to training "
            f"{privacy['identical_training']} (allowed {privacy['identical_allowed']}, {privacy['copies_swapped']} swapped), "
            f"to the reference {privacy['identical_reference']}"
            + (f"; identifier columns left out: {', '.join(left_out)}" if left_out else ""))


def runs_table(runs: list[dict]) -> str:
    """One line per run: raw pool vs submission vs holdout, privacy, minutes, output."""
    rows = [{
        "challenge": m["challenge"], "profile": m["profile"], "raw pool": m["accuracy_raw"]["overall"],
        "submission": m["accuracy"]["overall"], "holdout max": m["accuracy"].get("overall_max"), "copy": m.get("accuracy_copy"),
        "gap closed": f"{m['gap_closed']:.0%}" if m.get("gap_closed") is not None else "",
        "DCR share": m["privacy"].get("dcr_share"), "minutes": f"{m['seconds_total'] / 60:.1f}", "submission file": m["submission"],
    } for m in runs]
    return pd.DataFrame(rows).to_string(index=False, float_format=lambda x: f"{x:.4f}")


def step_plot(metrics: dict, path: Path) -> None:
    """PNG of the expected accuracy after each step, with the official scores of the raw pool and the submission
    and the holdout's "max" as reference lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [s["step"] for s in metrics["steps"]]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(steps, [s["accuracy_expected"] for s in metrics["steps"]], "o-", label="expected accuracy (objective)")
    ax.axhline(metrics["accuracy_raw"]["overall"], color="grey", ls=":", label="official: raw pool")
    ax.axhline(metrics["accuracy"]["overall"], color="C2", ls="--", label="official: submission")
    if metrics["accuracy"].get("overall_max") is not None:
        ax.axhline(metrics["accuracy"]["overall_max"], color="C3", ls="-.", label="official: holdout (max)")
    ax.set_title(f"{metrics['challenge']} ({metrics['profile']}): accuracy after each step")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def qa_report(training: pd.DataFrame, submission: pd.DataFrame, holdout: pd.DataFrame | None, key: str | None, path: Path,
              embedding_rows: int | None = None, seed: int = 1) -> dict:
    """The official mostlyai-qa HTML report (with similarity and distances against the holdout when given), with
    progress output; returns qa's own overall accuracy and DCR share (None when qa finds too little data).
    Accuracy uses all rows, as the prize did; `embedding_rows` caps the rows of the similarity and distance
    sections, whose cost grows with its square. `seed` sets qa's random state, as the prize's scoring did."""
    from mostlyai import qa

    qa.set_random_state(seed)
    with Progress("qa report", total=100) as progress:

        shown = set()

        def on_progress(total=None, completed=None, **_):
            share = 100 * completed / total if total and completed is not None else None
            if share is not None and share not in shown:
                shown.add(share)
                progress.update(share, force=True)

        _, metrics = qa.report(syn_tgt_data=submission, trn_tgt_data=training, hol_tgt_data=holdout, tgt_context_key=key,
                               report_path=path, report_title="Submission report", max_sample_size_embeddings=embedding_rows,
                               update_progress=on_progress)
    if metrics is None:  # qa's early exit on too little data: the report says why
        return {"overall": None, "dcr_share": None, "embedding_rows": embedding_rows, "note": "qa found too little data"}
    figures = {"overall": metrics.accuracy.overall, "dcr_share": metrics.distances.dcr_share, "embedding_rows": embedding_rows}
    if figures["dcr_share"] is None:
        figures["note"] = "qa computes no DCR share without a holdout"
    return figures


def main(argv: list[str] | None = None) -> int:
    paths = argv if argv is not None else sys.argv[1:]
    runs = [json.loads(Path(p).read_text()) for p in paths if Path(p).exists()]
    if not runs:
        print("no metrics.json found", file=sys.stderr)
        return 1
    print(runs_table(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
