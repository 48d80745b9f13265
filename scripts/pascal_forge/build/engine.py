"""Build the planned packages in order into the target channel with rattler-build's engine."""

from __future__ import annotations

import copy
import fcntl
import os
import shutil
import signal
import sys
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

import yaml
from rattler_build import BuildResult, RenderedVariant, ToolConfiguration, cli_api

from ..channel.local import (
    channel_url,
    index_channel,
    indexed_files,
    package_subdirs,
    publish_package,
    remove_scratch,
)
from ..defaults import BUILD_LOGS, BUILD_WORK, SOURCE_CHANNEL
from ..errors import ChannelError, PascalForgeError
from ..recipes.plan import Plan, PlannedBuild, _compatible
from ..recipes.render import SUMMARY_KEYS, RenderedOutput
from ..recipes.variants import read_variant_config, select_variant
from ..util import one_line
from .reachability import failed_channel_note
from .report import BuildLog, BuildOutcome, BuildReport, BuildReporter

DEFAULT_SOURCE_CHANNELS = (SOURCE_CHANNEL,)
TestStrategy = Literal["native", "skip"]
# Inside the work dir (rattler-build's output dir) these hold what is worth keeping between
# builds: the staging caches that let libtorch and every pytorch share one C++ build, and
# the downloaded sources.
_KEPT_WORK = ("build_cache", "src_cache")
_BUILD_TREES = "bld"
# Where the staged recipes' build scripts copy their output (beside rattler-build's work dir).
_SCRIPT_LOG = "script.log"
_LOCK = ".lock"


@dataclass(frozen=True)
class BuildOptions:
    channel: Path
    # rattler-build's output dir: staging caches and sources persist here, and each
    # finished package waits here until it is moved into the channel.
    work_dir: Path
    log_dir: Path
    source_channels: tuple[str, ...] = DEFAULT_SOURCE_CHANNELS
    force: bool = False
    test_strategy: TestStrategy = "native"

    @classmethod
    def for_channel(
        cls, channel: Path, *, work_dir: Path | None = None, log_dir: Path | None = None, **kwargs: object
    ) -> BuildOptions:
        """Options with the work and log folders next to the channel unless given."""
        return cls(
            channel=channel,
            work_dir=work_dir or channel.parent / BUILD_WORK,
            log_dir=log_dir or channel.parent / BUILD_LOGS,
            **kwargs,  # type: ignore[arg-type]
        )


class BuildInterrupted(PascalForgeError):
    """Ctrl-C: the build stopped between packages; the channel is consistent."""


def select_builds(plan: Plan, only: Sequence[str] = (), up_to: Sequence[str] = ()) -> list[PlannedBuild]:
    """The builds of `plan` that `--only` and `--up-to` ask for, in plan order.

    A name is a package name (libtorch) or a recipe name (pytorch). `--only` takes just the
    named builds; `--up-to` takes the named builds and everything they need.
    """
    known = {b.output.name for b in plan.builds} | {b.output.recipe for b in plan.builds}
    unknown = sorted((set(only) | set(up_to)) - known)
    if unknown:
        raise PascalForgeError(
            f"no package or recipe named {', '.join(unknown)} in the plan; "
            f"known names: {', '.join(sorted(known))}"
        )
    chosen = list(plan.builds)
    if only:
        chosen = [b for b in chosen if _named(b, only)]
    if up_to:
        wanted = {b.position for b in plan.builds if _named(b, up_to)}
        pending = list(wanted)
        while pending:
            for need in plan.builds[pending.pop()].needs:
                if need not in wanted:
                    wanted.add(need)
                    pending.append(need)
        chosen = [b for b in chosen if b.position in wanted]
    return chosen


def _named(build: PlannedBuild, names: Sequence[str]) -> bool:
    return build.output.name in names or build.output.recipe in names


def prepare_channel(channel: Path) -> None:
    """Make `channel` an indexed channel whose index matches its files.

    This is how a rerun resumes after a kill: scratch files go, a package that was moved in
    but not indexed yet gets indexed, and a deleted package drops out of the index.
    """
    if channel.exists() and not channel.is_dir():
        raise ChannelError(
            f"--channel {channel}: is a file, not a channel folder; name a folder (it is created if missing)"
        )
    remove_scratch(channel)
    index_channel(channel)


def pending_builds(builds: Sequence[PlannedBuild], channel: Path, *, force: bool) -> list[PlannedBuild]:
    """The builds that will run: all with `force`, otherwise those the channel's index lacks."""
    if force:
        return list(builds)
    present = {s: indexed_files(channel, s) for s in {b.output.subdir for b in builds}}
    return [b for b in builds if b.output.filename not in present[b.output.subdir]]


def build_channel(
    plan: Plan, builds: Sequence[PlannedBuild], options: BuildOptions, reporter: BuildReporter
) -> BuildReport:
    """Build `builds` in order into the channel; a failure stops its dependents only."""
    started = time.monotonic()
    options.log_dir.mkdir(parents=True, exist_ok=True)
    with _locked(options.work_dir):
        shutil.rmtree(options.work_dir / _BUILD_TREES, ignore_errors=True)
        _clear_finished_packages(options.work_dir)
        prepare_channel(options.channel)
        pending = {b.position for b in pending_builds(builds, options.channel, force=options.force)}
        try:
            with _stop_on_interrupt() as interrupted:
                outcomes = _build_in_order(plan, builds, pending, options, reporter, interrupted)
        finally:
            remove_scratch(options.channel)
    return BuildReport(options.channel, tuple(outcomes), time.monotonic() - started)


def _build_in_order(
    plan: Plan,
    builds: Sequence[PlannedBuild],
    pending: set[int],
    options: BuildOptions,
    reporter: BuildReporter,
    interrupted: threading.Event,
) -> list[BuildOutcome]:
    not_built: set[int] = set()
    outcomes: list[BuildOutcome] = []
    for number, build in enumerate(builds, 1):
        if interrupted.is_set():
            done = ", ".join(f"{o.build.output.name} {o.build.output.build_string}" for o in outcomes[-1:])
            raise BuildInterrupted(
                f"interrupted after {done or 'nothing'}: the channel {options.channel} holds every package "
                "finished so far; run the same command again to resume."
            )
        blockers = [plan.builds[p] for p in build.needs if p in not_built]
        if blockers:
            names = ", ".join(f"{b.output.name} {b.output.build_string}" for b in blockers)
            outcome = BuildOutcome(build, "blocked", message=f"it needs {names}, which was not built")
        elif build.position not in pending:
            outcome = BuildOutcome(build, "skipped")
        else:
            outcome = _build_one(build, number, len(builds), options, reporter, plan.variant_config)
        if outcome.status in ("failed", "blocked"):
            not_built.add(build.position)
        outcomes.append(outcome)
        reporter.build_finished(outcome, number, len(builds))
    return outcomes


def _build_one(
    build: PlannedBuild,
    number: int,
    total: int,
    options: BuildOptions,
    reporter: BuildReporter,
    variant_config: Path | None,
) -> BuildOutcome:
    output = build.output
    log_path = options.log_dir / f"{output.name}-{output.version}-{output.build_string}.log"
    channels = [channel_url(options.channel), *options.source_channels]
    started = time.monotonic()
    reporter.build_started(build, number, total, log_path)
    with log_path.open("w", encoding="utf-8") as stream:
        log = BuildLog(stream, reporter)
        log.write(f"recipe {output.recipe}, package {output.filename}, variant {variant_text(build)}")
        log.write(f"channels (strict priority): {', '.join(channels)}")
        engine_started = time.monotonic()
        try:
            result = _run_engine(build, options, channels, log, stream, variant_config)
        except Exception as exc:  # rattler-build raises one error type per failing step
            engine = time.monotonic() - engine_started
            reason = one_line(exc)
            note = failed_channel_note(reason, channels)
            reason += f"; {note}" if note else ""
            log.write(f"FAILED: {reason}")
            _clear_finished_packages(options.work_dir)
            return BuildOutcome(
                build,
                "failed",
                seconds=time.monotonic() - started,
                engine_seconds=engine,
                log=log_path,
                message=f"recipe {output.recipe}, variant {variant_text(build)}: {reason} (log: {log_path})",
                channel_note=note,
            )
        engine = time.monotonic() - engine_started
        published = [publish_package(p, options.channel, result.platform) for p in result.packages]
        index_channel(
            options.channel, [result.platform], replaced=[p.name for p in published], keep_scratch=True
        )
        if output.filename not in {p.name for p in published}:
            written = ", ".join(p.name for p in published)
            log.write(f"WARNING: the plan named {output.filename}, rattler-build wrote {written}")
        log.write(f"published {', '.join(str(p) for p in published)}")
    return BuildOutcome(
        build, "built", seconds=time.monotonic() - started, engine_seconds=engine, log=log_path
    )


@dataclass(frozen=True)
class _EngineResult:
    packages: tuple[Path, ...]
    platform: str


def _run_engine(
    build: PlannedBuild,
    options: BuildOptions,
    channels: list[str],
    log: BuildLog,
    stream: IO[str],
    variant_config: Path | None,
) -> _EngineResult:
    with _stderr_into(stream):
        if build.output.inherits:
            return _run_staging_engine(build, options, channels, log, variant_config)
        result: BuildResult = _for_this_variant(build).run_build(
            tool_config=ToolConfiguration(test_strategy=options.test_strategy, channel_priority="strict"),
            output_dir=options.work_dir,
            channels=channels,
            progress_callback=log,
            # The build id is a timestamp in the build folder's name; without it the folder
            # (and so the staging cache key, which holds the host prefix) is stable.
            no_build_id=True,
        )
    return _EngineResult(tuple(Path(p) for p in result.packages), result.platform)


def _run_staging_engine(
    build: PlannedBuild,
    options: BuildOptions,
    channels: list[str],
    log: BuildLog,
    variant_config: Path | None,
) -> _EngineResult:
    """Build an output that inherits a staging build (pytorch's C++ part, triton's LLVM).

    rattler-build keys its staging cache by the host prefix, whose folder py-rattler-build
    names after each output (libtorch, pytorch), so going through `run_build` would redo
    the whole C++/CUDA build for every output name. rattler-build's command-line path
    names that folder after the recipe for every inheriting output, and so builds the
    staging once per variant; it is driven here with a variant file narrowed to this one
    build. Siblings it rebuilds on the way (libtorch for a pytorch, from the cache) are
    not published: the plan builds each of them on its own turn.
    """
    output = build.output
    if variant_config is None or output.recipe_file is None:
        raise PascalForgeError(f"{output.filename}: the plan holds no recipe or variant file to build from")
    narrowed = _variant_file_for(build, variant_config, options.work_dir)
    log.write(f"staging build {output.inherits}: rattler-build's command-line engine, variants {narrowed}")
    script_logs = list((options.work_dir / _BUILD_TREES).glob(f"*/{_SCRIPT_LOG}"))
    for stale in script_logs:
        stale.unlink()
    try:
        with warnings.catch_warnings():
            # Deprecated in favour of run_build, which is exactly the path that cannot share
            # the staging build (see above).
            warnings.simplefilter("ignore", DeprecationWarning)
            _build_with_cli_engine(output, narrowed, channels, options)
    finally:
        # That engine logs nothing as a library; the recipes' scripts keep their own output.
        for script_log in sorted((options.work_dir / _BUILD_TREES).glob(f"*/{_SCRIPT_LOG}")):
            log.write(f"--- build script output ({script_log}) ---")
            log.write(script_log.read_text(encoding="utf-8", errors="replace"))
    built = options.work_dir / output.subdir / output.filename
    for sibling in (options.work_dir / output.subdir).glob("*.conda"):
        if sibling != built:
            sibling.unlink()
    if not built.is_file():
        found = sorted(p.name for p in (options.work_dir / output.subdir).glob("*.conda"))
        raise PascalForgeError(
            f"rattler-build wrote {', '.join(found) or 'nothing'}, not the planned {output.filename}"
        )
    return _EngineResult((built,), output.subdir)


def _build_with_cli_engine(
    output: RenderedOutput, variants: Path, channels: list[str], options: BuildOptions
) -> None:
    cli_api.build_recipes(
        [output.recipe_file],
        up_to=output.name,
        variant_config=[str(variants)],
        channel=channels,
        output_dir=options.work_dir,
        no_build_id=True,
        test=options.test_strategy,
        channel_priority="strict",
        # Siblings that the channel already holds (libtorch, for a pytorch) are not built
        # again; with --force the planned package itself must not be skipped either.
        skip_existing="local" if options.force else "all",
    )


def _variant_file_for(build: PlannedBuild, variant_config: Path, work_dir: Path) -> Path:
    """A copy of the variant file with every key narrowed to this build's value."""
    raw = read_variant_config(variant_config)
    chosen = {key: value for key, value in build.output.variant.items() if key in raw}
    narrowed = select_variant(raw, chosen, source=variant_config)
    path = work_dir / "variants" / f"{build.output.filename.removesuffix('.conda')}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(narrowed, sort_keys=False), encoding="utf-8")
    return path


def _for_this_variant(build: PlannedBuild) -> RenderedVariant:
    """rattler-build's handle for `build`, resolving pin_subpackage to the planned sibling.

    py-rattler-build resolves `pin_subpackage` against every sibling output of the recipe
    by name alone, so the last variant wins: the CUDA 12.6 chain-tools came out pinned to
    the CUDA 12.9 libchain. Handing it only the siblings of this variant (the one pinned in
    its variant, and otherwise those with matching variant keys) makes the pin exact.
    """
    rendered = build.output.rendered
    if rendered is None:
        raise PascalForgeError(f"{build.output.filename}: the plan holds no rendered recipe to build")
    own = {key: str(value) for key, value in rendered.variant.items()}
    siblings = []
    for sibling in getattr(rendered, "_siblings", []):
        stage1 = sibling.recipe
        pinned = own.get(str(stage1.package.name))
        if pinned is not None and pinned != f"{stage1.package.version} {stage1.build.string}":
            continue
        if _compatible(own, {key: str(value) for key, value in sibling.variant.items()}):
            siblings.append(sibling)
    narrowed = copy.copy(rendered)
    narrowed._siblings = siblings
    return narrowed


def variant_text(build: PlannedBuild) -> str:
    variant = build.output.variant
    return " ".join(f"{key}={variant[key]}" for key in SUMMARY_KEYS if key in variant) or "default"


def _clear_finished_packages(work_dir: Path) -> None:
    """Empty the package folders of the work dir.

    rattler-build uses its output dir as the first channel and indexes it before each
    build: a package left there by a killed or failed build would shadow the target
    channel, and a half-written one would stop the indexer.
    """
    if not work_dir.is_dir():
        return
    for subdir in package_subdirs(work_dir):
        if subdir.name not in _KEPT_WORK:
            shutil.rmtree(subdir)


@contextmanager
def _stderr_into(stream: IO[str]) -> Iterator[None]:
    """Send what rattler-build writes to stderr itself into the build's log.

    On a terminal it draws its own progress bars there, through the live view; sent to a
    file it draws none, and anything else it prints lands in the log with the rest.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    os.dup2(stream.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@contextmanager
def _stop_on_interrupt() -> Iterator[threading.Event]:
    """Turn Ctrl-C into "stop after the running build".

    rattler-build holds the GIL while it builds and swallows exceptions raised in its
    progress callback, so Python's KeyboardInterrupt would be lost and the next build
    would start. A terminal's Ctrl-C also reaches the build script, which then fails.
    """
    interrupted = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield interrupted
        return
    previous = signal.signal(signal.SIGINT, lambda *_: interrupted.set())
    try:
        yield interrupted
    finally:
        signal.signal(signal.SIGINT, previous)


@contextmanager
def _locked(work_dir: Path) -> Iterator[None]:
    """One build per work dir at a time: two would overwrite each other's packages."""
    work_dir.mkdir(parents=True, exist_ok=True)
    with (work_dir / _LOCK).open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise PascalForgeError(
                f"{work_dir}: another pascal-forge build is running there; wait for it or pass "
                "another --work-dir"
            ) from exc
        lock.write(str(os.getpid()))
        lock.flush()
        yield
