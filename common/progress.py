"""Progress output of long steps: a line that updates in place on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
import time


class Progress:
    """`with Progress("trimming", total=n) as p: p.update(done, objective=...)`; prints the elapsed time."""

    def __init__(self, name: str, total: float | None = None, stream=None, min_interval: float = 1.0):
        self.name, self.total = name, total
        self.stream = stream or sys.stderr
        self.tty = getattr(self.stream, "isatty", lambda: False)()
        self.min_interval = min_interval
        self.start = self.last = time.monotonic()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()

    def update(self, done: float | None = None, force: bool = False, **info) -> None:
        now = time.monotonic()
        if not force and now - self.last < self.min_interval:
            return
        self.last = now
        share = f" {100 * done / self.total:5.1f}%" if done is not None and self.total else ""
        details = " ".join(f"{k}={v:.5f}" if isinstance(v, float) else f"{k}={v}" for k, v in info.items())
        line = f"[{self.name}]{share} {details} ({now - self.start:.1f} s)"
        self.stream.write(("\r" + line) if self.tty else line + "\n")
        self.stream.flush()

    def log(self, message: str) -> None:
        """A line of its own (before or after the running line)."""
        self.stream.write(("\n" if self.tty else "") + f"[{self.name}] {message} ({time.monotonic() - self.start:.1f} s)\n")
        self.stream.flush()
