"""A progress bar for a terminal command: one stderr line redrawn in place."""

from __future__ import annotations

import sys
import time


class ProgressLine:
    """One stderr line rewritten in place (`\\r`): done/total, percent, messages/s."""

    # Redraws at most this often; the last one is always drawn.
    _EVERY_SECONDS = 0.2

    def __init__(self, label: str) -> None:
        self._label = label
        self._started = time.monotonic()
        self._drawn_at = 0.0
        self._last = (-1, -1)
        self._width = 0

    def __call__(self, done: int, remaining: int) -> None:
        """The indexer's `progress(done, remaining)` callback."""
        now = time.monotonic()
        if (done, remaining) == self._last or (
            remaining and now - self._drawn_at < self._EVERY_SECONDS
        ):
            return
        self._drawn_at = now
        self._last = (done, remaining)
        total = done + remaining
        percent = 100.0 if total == 0 else 100.0 * done / total
        rate = done / max(now - self._started, 1e-6)
        line = f"{self._label}: {done:,}/{total:,} {percent:5.1f}% {rate:,.0f} messages/s"
        # Spaces over what a longer line before left on screen.
        sys.stderr.write("\r" + line.ljust(self._width))
        sys.stderr.flush()
        self._width = len(line)

    def note(self, text: str) -> None:
        """A line of its own, below the bar; the bar is drawn again after it."""
        sys.stderr.write(("\n" if self._width else "") + f"mailsvc: {text}\n")
        sys.stderr.flush()
        self._width = 0

    def end(self) -> None:
        if self._width:
            sys.stderr.write("\n")
            sys.stderr.flush()
