"""What a channel build reports: each package's outcome, the whole build's report, and the
reporter protocol that receives them as they happen (console.py draws them)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Literal, Protocol

from ..recipes.plan import PlannedBuild

if TYPE_CHECKING:
    from rattler_build.progress import BuildStepEvent, DownloadCompleteEvent, DownloadStartEvent, LogEvent

Status = Literal["built", "skipped", "failed", "blocked"]


@dataclass(frozen=True)
class Finding:
    """One thing the preflight found; errors stop the build unless preflight is turned off."""

    severity: str  # "error" or "warning"
    message: str


@dataclass(frozen=True)
class BuildOutcome:
    build: PlannedBuild
    status: Status
    # Wall time pascal-forge spent on this package, and the part of it inside rattler-build.
    seconds: float = 0.0
    engine_seconds: float = 0.0
    log: Path | None = None
    message: str = ""
    # For a fetch or solve failure: the channel that could not be read (or those that were).
    channel_note: str = ""


@dataclass(frozen=True)
class BuildReport:
    channel: Path
    outcomes: tuple[BuildOutcome, ...]
    seconds: float

    def count(self, status: Status) -> int:
        return sum(1 for outcome in self.outcomes if outcome.status == status)

    @property
    def ok(self) -> bool:
        return not any(outcome.status in ("failed", "blocked") for outcome in self.outcomes)

    @property
    def engine_seconds(self) -> float:
        return sum(outcome.engine_seconds for outcome in self.outcomes)


class BuildReporter(Protocol):
    """Receives the events of a channel build, in order."""

    def build_started(self, build: PlannedBuild, number: int, total: int, log: Path) -> None: ...

    def build_log(self, line: str) -> None: ...

    def build_finished(self, outcome: BuildOutcome, number: int, total: int) -> None: ...


class BuildLog:
    """rattler-build's progress callback for one build: every message goes to the build's log
    file, and each line to the reporter so the live view can show the tail."""

    def __init__(self, stream: IO[str], reporter: BuildReporter) -> None:
        self._stream = stream
        self._reporter = reporter

    def write(self, text: str) -> None:
        for line in text.rstrip("\n").splitlines() or [""]:
            self._stream.write(line + "\n")
            self._reporter.build_log(line)
        self._stream.flush()

    def on_log(self, event: LogEvent) -> None:
        prefix = "" if event.level == "info" else f"{event.level.upper()}: "
        self.write(prefix + event.message)

    def on_build_step(self, event: BuildStepEvent) -> None:
        self.write(f"== {event.step_name}: {event.message}")

    def on_download_start(self, event: DownloadStartEvent) -> None:
        self.write(f"downloading {event.url}")

    def on_download_complete(self, event: DownloadCompleteEvent) -> None:
        self.write(f"downloaded {event.url}")
