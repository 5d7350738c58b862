"""One progress protocol for every long piece of work: typed events, rendered by the caller.

A stage or library loop takes ``progress: Progress`` and calls it with
:class:`ProgressEvent` values. The CLI renders them as tqdm bars (one per stage), the
dashboard as its progress bar, the job table stores them; nobody parses text back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class ProgressEvent:
    """``done`` of ``total`` units of one step of one stage.

    ``stage`` names the stage (``"prepare"``, ``"extract"``, ``"explain"``, ...), ``step``
    the part of it (``"activations"``, ``"segments"``, ...), ``genre`` the genre the step
    works on when it works on one.
    """

    stage: str
    step: str
    done: int
    total: int
    genre: str | None = None

    @property
    def label(self) -> str:
        """A human-readable name of the step, for a bar's title."""
        return f"{self.genre}: {self.step}" if self.genre else self.step

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total > 0 else 0.0


Progress = Callable[[ProgressEvent], None]


def null_progress(event: ProgressEvent) -> None:
    """A progress callback that ignores every event."""
