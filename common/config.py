"""The run's configuration: the entry script's CONFIG block, a profile on top, then the command line.

Every knob is defined once, with its default, in the CONFIG block of `flat/run_flat.py` or
`sequential/run_sequential.py`. This module only knows what each knob may hold (`RULES`: its type and range) and
checks a whole configuration before anything runs: a bad value is a one-line `DataError`, never a traceback
after an hour of training.
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass

from common.io import DataError

MODELS = ("MOSTLY_AI/Small", "MOSTLY_AI/Medium", "MOSTLY_AI/Large")
COLUMN_ORDERS = ("cardinality", "training")  # how the generator orders the columns it learns (common.generate)
TABLE_KINDS = ("univariate", "bivariate", "trivariate", "next_row")  # what `screen_tables` may name
MAX_SEED = 2**31 - 10_000  # the SDK's random state must stay below 2**32 for every derived seed


@dataclass(frozen=True)
class Rule:
    """What one knob may hold: `kind` int, float, bool, str or tuple; numbers within [low, high] (`above`: a strict
    lower bound); None where `optional`; strings and tuple items among `choices` when given."""

    kind: type
    low: float | None = None
    high: float | None = None
    above: float | None = None
    optional: bool = False
    choices: tuple | None = None
    length: int | None = None  # tuples of exactly this many items

    def check(self, key: str, value):
        """`value` as this rule's kind (an integral float becomes an int), or a `DataError` naming the knob."""
        if value is None:
            if self.optional:
                return None
            raise DataError(f"{key}: a value is required ({self.describe()})")
        if self.kind is bool:
            if not isinstance(value, bool):
                raise DataError(f"{key}={value!r}: expected true or false")
            return value
        if self.kind is str:
            if not isinstance(value, str) or (self.choices and value not in self.choices):
                raise DataError(f"{key}={value!r}: expected {self.describe()}")
            return value
        if self.kind is tuple:
            items = tuple(value) if isinstance(value, (tuple, list)) else (value,) if isinstance(value, str) and value else None
            if items is None or (self.choices and not set(items) <= set(self.choices)) or (self.length and len(items) != self.length):
                raise DataError(f"{key}={value!r}: expected {self.describe()}")
            return items
        number = value
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise DataError(f"{key}={value!r}: expected {self.describe()}")
        if self.kind is int:
            if value != int(value):
                raise DataError(f"{key}={value!r}: expected {self.describe()}")
            number = int(value)
        if (self.low is not None and number < self.low) or (self.high is not None and number > self.high) or \
                (self.above is not None and number <= self.above):
            raise DataError(f"{key}={value!r}: expected {self.describe()}")
        return number if self.kind is int else float(number)

    def describe(self) -> str:
        if self.kind is bool:
            return "true or false"
        if self.kind is str:
            return "one of " + ", ".join(self.choices) if self.choices else "a text"
        if self.kind is tuple:
            what = f"{self.length} integers" if self.length else "names among " + ", ".join(self.choices or ())
            return what + (" (comma-separated)" if self.choices else "") + (", or None" if self.optional else "")
        def shown(x: float) -> str:
            return f"{int(x):,}" if self.kind is int else f"{x:g}"

        text = "an integer" if self.kind is int else "a number"
        if self.low is not None and self.high is not None:
            text += f" from {shown(self.low)} to {shown(self.high)}"
        else:
            bounds = [f"{sign} {shown(bound)}" for sign, bound in ((">", self.above), (">=", self.low), ("<=", self.high))
                      if bound is not None]
            text += " " + " and ".join(bounds) if bounds else ""
        return text + (", or None" if self.optional else "")


def _count(low: int = 1, optional: bool = False) -> Rule:
    return Rule(int, low=low, optional=optional)


def _share(low: float = 0.0, high: float = 1.0) -> Rule:
    return Rule(float, low=low, high=high)


RULES: dict[str, Rule] = {
    # data and run
    "training": Rule(str),
    "holdout": Rule(str, optional=True),
    "pool": Rule(str, optional=True),
    "context_key": Rule(str),
    "group_lengths": Rule(tuple, length=2, optional=True),
    "seed": Rule(int, low=0, high=MAX_SEED),
    "time_budget_min": Rule(float, above=0),
    "finish_minutes": Rule(float, low=0),
    "selection_minutes": Rule(float, low=0),
    # generator
    "model": Rule(str, choices=MODELS),
    "column_order": Rule(str, choices=COLUMN_ORDERS),
    "discrete_max_values": _count(low=0),
    "max_epochs": Rule(float, above=0),
    "train_minutes": Rule(float, above=0),
    "batch_size": _count(optional=True),
    "max_training_samples": _count(low=10, optional=True),
    "iterations": _count(),
    "pool_size": _count(),
    "temperature": Rule(float, above=0, high=10),
    # selection
    "target_size": _count(optional=True),
    "max_triples": _count(low=0),
    "metric_noise": Rule(float, low=0, high=100),
    "ipf_pairs": _count(low=0),
    "ipf_passes": _count(low=0),
    "ipf_triples": Rule(bool),
    "ipf_time_share": _share(),
    "oversize": Rule(float, low=1, high=10),
    "trim_batch_share": Rule(float, above=0, high=1),
    "trim_time_share": _share(),
    "coherence_share": _share(high=0.99),
    "n_candidates": _count(),
    "screen_tables": Rule(tuple, choices=TABLE_KINDS),
    "refine_chunk": _count(),
    "refine_patience": _count(),
    "refine_finalists": _count(),
    "anneal_sweeps": Rule(float, low=0),
    "anneal_temperature": Rule(float, low=0),
    # privacy and reporting
    "max_dcr_share": Rule(float, above=0.5, high=1),
    "privacy_sample_rows": _count(low=100),
    "privacy_polish_rows": _count(low=1),
    "qa_report": Rule(bool),
    "qa_embedding_rows": _count(low=100, optional=True),
}


def parse_value(text: str):
    """A `--set` value as Python: numbers, tuples, None, true/false in any case; anything else stays a string;
    a comma-separated list of words becomes a tuple."""
    words = {"true": True, "false": False, "none": None}
    if text.lower() in words:
        return words[text.lower()]
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return tuple(w.strip() for w in text.split(",")) if "," in text else text


def check_config(config: dict) -> dict:
    """The configuration with every value checked against its rule and converted to its kind; raises `DataError`
    (one line) for an unknown knob or a value out of range."""
    unknown = sorted(set(config) - set(RULES) - {"profile", "out"})
    if unknown:
        raise DataError(f"unknown setting {', '.join(unknown)} (known: {', '.join(sorted(RULES))})")
    checked = {key: RULES[key].check(key, value) if key in RULES else value for key, value in config.items()}
    if checked.get("ipf_time_share", 0) + checked.get("trim_time_share", 0) >= 1:
        raise DataError("ipf_time_share + trim_time_share must stay below 1 (refinement needs time too)")
    if checked.get("anneal_sweeps") and not checked.get("anneal_temperature"):
        raise DataError("anneal_sweeps needs anneal_temperature above 0 (or set anneal_sweeps=0: no annealing)")
    lengths = checked.get("group_lengths")
    if lengths is not None and not 1 <= lengths[0] <= lengths[1]:
        raise DataError(f"group_lengths={lengths}: expected (shortest, longest) with 1 <= shortest <= longest")
    return checked
