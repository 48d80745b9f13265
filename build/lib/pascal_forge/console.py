"""Everything the terminal shows: the error line, pascal-forge's log lines on stderr, the plan,
expensive-build and solution tables, and during `pascal-forge build` a live view (or plain
lines when the output is not a terminal), the dry-run table and the summary at the end.

Text that comes from outside (servers, file names, build logs) is printed literally, never as
markup."""

from __future__ import annotations

import logging
import sys
import time
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from .build.report import BuildOutcome, BuildReport, BuildReporter
from .channel.solve import Solution, System
from .recipes.plan import Plan, PlannedBuild, expensive_builds
from .safe_text import printable, redact_urls

TAIL_LINES = 8


def describe(build: PlannedBuild) -> str:
    output = build.output
    return f"{output.name} {output.version} {output.build_string}"


class PlainReporter:
    """One line per event that matters, for logs and pipes (no cursor movement)."""

    def __init__(self, console: Console) -> None:
        self._console = console

    def build_started(self, build: PlannedBuild, number: int, total: int, log: Path) -> None:
        self._console.print(f"[{number}/{total}] building {describe(build)} (log: {log})", highlight=False)

    def build_log(self, line: str) -> None:
        pass

    def build_finished(self, outcome: BuildOutcome, number: int, total: int) -> None:
        self._console.print(f"[{number}/{total}] {outcome_line(outcome)}", highlight=False, soft_wrap=True)


class LiveReporter:
    """A live panel for the running build (elapsed time, log tail) above the finished ones.

    rattler-build holds the GIL while it builds, so no refresh thread could run; the view
    is redrawn from the log callback instead, at most a few times a second. rattler-build
    streams the build script's output line by line, so a busy build keeps it current.
    """

    def __init__(self, console: Console, refresh_seconds: float = 0.25) -> None:
        self._tail: deque[str] = deque(maxlen=TAIL_LINES)
        self._title = ""
        self._log = ""
        self._started = 0.0
        self._refresh_seconds = refresh_seconds
        self._refreshed = 0.0
        self._live = Live(console=console, auto_refresh=False, transient=True, get_renderable=self._view)

    def __enter__(self) -> LiveReporter:
        self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._live.stop()

    def build_started(self, build: PlannedBuild, number: int, total: int, log: Path) -> None:
        self._tail.clear()
        self._title = f"[{number}/{total}] building {describe(build)}"
        self._log = str(log)
        self._started = time.monotonic()
        self._refresh(force=True)

    def build_log(self, line: str) -> None:
        self._tail.append(line)
        self._refresh()

    def build_finished(self, outcome: BuildOutcome, number: int, total: int) -> None:
        self._title = ""
        self._live.console.print(f"[{number}/{total}] {outcome_line(outcome)}", highlight=False)
        self._refresh(force=True)

    def _refresh(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._refreshed >= self._refresh_seconds:
            self._refreshed = now
            self._live.refresh()

    def _view(self) -> Group | Text:
        if not self._title:
            return Text("")
        elapsed = time.monotonic() - self._started
        lines = [Text(f"{self._title}  {_duration(elapsed)}", style="bold"), Text(f"  log: {self._log}")]
        lines += [Text("  " + line, style="dim", overflow="ellipsis", no_wrap=True) for line in self._tail]
        return Group(*lines)


def outcome_line(outcome: BuildOutcome) -> str:
    what = describe(outcome.build)
    if outcome.status == "built":
        return f"built {what} in {_duration(outcome.seconds)}"
    if outcome.status == "skipped":
        return f"skipped {what}: already in the channel"
    if outcome.status == "failed":
        return f"FAILED {what}: {outcome.message}"
    return f"not built {what}: {outcome.message}"


def summary_table(report: BuildReport) -> Table:
    statuses = ("built", "skipped", "failed", "blocked")
    counts = ", ".join(f"{report.count(status)} {status}" for status in statuses)
    title = f"build summary: {counts} in {_duration(report.seconds)} (into {path_label(report.channel)})"
    table = Table(title=title)
    for column in ("#", "result", "package", "version", "build string", "time", "log"):
        table.add_column(column, no_wrap=column not in ("build string", "log"))
    for outcome in report.outcomes:
        output = outcome.build.output
        table.add_row(
            str(outcome.build.position + 1),
            outcome.status,
            output.name,
            output.version,
            output.build_string,
            _duration(outcome.seconds) if outcome.status in ("built", "failed") else "-",
            str(outcome.log) if outcome.status == "failed" and outcome.log else "",
        )
    return table


def path_label(path: Path) -> str:
    """A folder as a reader recognises it: ./channel, not a bare word that reads like prose."""
    text = str(path)
    return text if path.is_absolute() or text.startswith(".") else f"./{text}"


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


@contextmanager
def reporter_for(console: Console) -> Iterator[BuildReporter]:
    """The live view on a terminal, plain lines anywhere else."""
    if console.is_terminal and not console.is_dumb_terminal:
        with LiveReporter(console) as live:
            yield live
    else:
        yield PlainReporter(console)


def closing_message(report: BuildReport) -> str:
    if report.count("failed") or report.count("blocked"):
        notes = dict.fromkeys(o.channel_note for o in report.outcomes if o.channel_note)
        return (
            f"{report.count('failed')} build(s) failed and {report.count('blocked')} were not built because "
            "they need one that failed; see the logs named above."
            + "".join(f"\nfetching or solving failed: {note}" for note in notes)
        )
    if not report.count("built"):
        return (
            f"nothing to build: all {len(report.outcomes)} selected package(s) are already in "
            f"{report.channel} (--force rebuilds them)."
        )
    return f"built {report.count('built')} package(s) into {report.channel}."


def dry_run_table(plan: Plan, selected: Sequence[PlannedBuild], *, force: bool) -> Table:
    chosen = {b.position for b in selected}
    title = (
        f"dry run: {len(selected)} of {len(plan.builds)} packages selected (into {path_label(plan.channel)})"
    )
    table = Table(title=title)
    for column in ("#", "package", "version", "build string", "recipe", "needs", "action"):
        table.add_column(column, no_wrap=column not in ("build string", "needs"))
    for build in plan.builds:
        if build.position not in chosen:
            action = "not selected"
        elif build.in_channel and not force:
            action = "skip (in channel)"
        else:
            action = "build"
        needs = ",".join(str(n + 1) for n in build.needs) or "-"
        table.add_row(*_package_cells(build), build.output.recipe, needs, action)
    return table


def _package_cells(build: PlannedBuild) -> list[str]:
    """The columns every plan table starts with: #, package, version, build string."""
    output = build.output
    return [str(build.position + 1), output.name, output.version, output.build_string]


def print_error(message: str) -> None:
    # Messages quote servers and file names: shown literally, never as markup or terminal controls.
    text = Text.assemble(("error:", "bold red"), " ", redact_urls(printable(message)))
    Console(stderr=True).print(text, highlight=False, soft_wrap=True)


class StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time, so a redirected stderr gets the lines too."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, _value: object) -> None:
        pass


def log_progress_to_stderr() -> None:
    """Long steps (downloads, compiles) report through logging; show ours, not the libraries'."""
    logger = logging.getLogger("pascal_forge")
    if not any(isinstance(h, StderrHandler) for h in logger.handlers):
        handler = StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def stdout_console() -> Console:
    # Piped output gets a fixed width so build strings are never cut.
    return Console() if sys.stdout.isatty() else Console(width=160)


def plan_table(plan: Plan) -> Table:
    table = Table(title=f"build plan ({len(plan.builds)} packages) for {path_label(plan.channel)}")
    for column in ("#", "package", "version", "build string", "CUDA", "Python", "in channel"):
        table.add_column(column, no_wrap=column != "build string")
    for build in plan.builds:
        output = build.output
        in_channel = "yes" if build.in_channel else "no"
        table.add_row(*_package_cells(build), output.cuda or "-", output.python or "-", in_channel)
    return table


def expensive_builds_table(plan: Plan) -> Table:
    """How often each expensive compile runs: what the build costs, before it starts."""
    expensive = expensive_builds(plan)
    cudas = sorted({cuda for e in expensive for cuda in e.per_cuda})
    table = Table(title="expensive builds: how many times each runs")
    for column in ("recipe", "build", *(f"CUDA {c}" for c in cudas), "in all"):
        table.add_column(column)
    for build in expensive:
        counts = [str(build.per_cuda.get(cuda, 0)) for cuda in cudas]
        table.add_row(build.recipe, Text(build.what), *counts, str(build.total))
    return table


def solution_table(solution: Solution, system: System) -> Table:
    machine = f"__cuda {system.cuda or '-'}, __cuda_arch {system.cuda_arch or '-'}"
    table = Table(title=f"would install {len(solution.packages)} packages ({machine}); * = ours")
    for column in ("", "package", "version", "build", "channel"):
        table.add_column(column, no_wrap=column != "build")
    for package in solution.packages:
        table.add_row(
            "*" if package.ours else "", package.name, package.version, package.build, package.channel
        )
    return table
