"""Progress output of long steps: a rich progress bar on a terminal, a plain line every second otherwise (logs)."""

from __future__ import annotations

import sys
import time

import rich.console
import rich.progress


class Progress:
    """`with Progress("trim", total=n) as p: p.update(done, loss=...)`: the share done (when there is a total), the
    details given, and the elapsed time."""

    def __init__(self, name: str, total: float | None = None, stream=None, min_interval: float = 1.0):
        self.name, self.total = name, total
        self.stream = stream or sys.stderr
        self.min_interval = min_interval
        self.start = self.last = time.monotonic()
        console = rich.console.Console(file=self.stream)
        self.bar = None
        if console.is_terminal:
            columns = [rich.progress.TextColumn("[{task.description}]", markup=False)]
            if total:
                columns += [rich.progress.BarColumn(), rich.progress.TaskProgressColumn()]
            columns += [rich.progress.TextColumn("{task.fields[details]}", markup=False), rich.progress.TimeElapsedColumn()]
            self.bar = rich.progress.Progress(*columns, console=console)
            self.task = self.bar.add_task(name, total=total, details="")

    def __enter__(self) -> "Progress":
        if self.bar:
            self.bar.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.bar:
            self.bar.stop()

    def update(self, done: float | None = None, force: bool = False, **info) -> None:
        details = " ".join(f"{k}={v:.5f}" if isinstance(v, float) else f"{k}={v}" for k, v in info.items())
        if self.bar:
            self.bar.update(self.task, completed=done, details=details)
            return
        now = time.monotonic()
        if not force and now - self.last < self.min_interval:
            return
        self.last = now
        share = f" {100 * done / self.total:5.1f}%" if done is not None and self.total else ""
        self._write(f"[{self.name}]{share} {details} ({now - self.start:.1f} s)")

    def log(self, message: str) -> None:
        """A line of its own (above the bar on a terminal)."""
        line = f"[{self.name}] {message} ({time.monotonic() - self.start:.1f} s)"
        if self.bar:
            self.bar.console.print(line, markup=False, highlight=False)
        else:
            self._write(line)

    def _write(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()
