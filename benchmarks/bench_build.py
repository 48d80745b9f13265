"""What `pascal-forge build` costs on the fixture chain (8 packages, 3 recipes, 2 CUDA variants).

Prints, as medians over --repeat runs:
- the wall time of the whole `pascal-forge build` command and its peak memory (max RSS);
- pascal-forge's overhead beyond rattler-build's own build time, two ways:
  inside one run (time outside rattler-build's build calls: index, moves, logs, plan), and
  end to end against rattler-build alone building the same outputs in the same order
  (rendering, then each build into one output folder that doubles as the channel);
- the same with every build script made --script-seconds longer, since fixture builds take
  milliseconds while real ones take minutes to hours and the overhead per package is fixed.
Goal: overhead under 5 %.

Run from the repository root: python benchmarks/bench_build.py [--repeat N] [--script-seconds S]
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from rattler_build import ToolConfiguration
from rich.console import Console

from pascal_forge.build.engine import BuildOptions, build_channel, prepare_channel
from pascal_forge.channel.local import index_channel
from pascal_forge.console import PlainReporter
from pascal_forge.recipes.plan import make_plan

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures" / "chain"
VARIANTS = FIXTURES / "conda_build_config.yaml"


@dataclass(frozen=True)
class Run:
    total: float  # prepare + plan + all builds, in this process
    engine: float  # time inside rattler-build's build calls
    packages: int


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--script-seconds", type=float, default=1.0, help="added to each build script")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        mirror = root / "mirror"
        index_channel(mirror, ["linux-64"])
        wall, peak_kib = _cli_run(root / "cli", mirror)
        print(f"fixture chain via the CLI: {wall:.2f} s wall, peak memory {peak_kib / 1024:.0f} MiB max RSS")
        for seconds in (0.0, args.script_seconds):
            recipes = _recipes(root / f"recipes-{seconds}", seconds)
            runs, bare = [], []
            for i in range(args.repeat):
                runs.append(_pascal_forge_run(root / f"pf-{seconds}-{i}", recipes, mirror))
                bare.append(_rattler_build_run(root / f"rb-{seconds}-{i}", recipes, mirror))
            _report(seconds, runs, bare)


def _recipes(target: Path, script_seconds: float) -> Path:
    shutil.copytree(FIXTURES / "recipes", target)
    if script_seconds:
        for recipe in target.glob("*/recipe.yaml"):
            text = recipe.read_text(encoding="utf-8")
            # Every script list gets a sleep first; the build string hash does not change.
            text = text.replace("      script:\n", f"      script:\n        - sleep {script_seconds}\n")
            text = text.replace("  script:\n    -", f"  script:\n    - sleep {script_seconds}\n    -")
            recipe.write_text(text, encoding="utf-8")
    return target


def _cli_run(root: Path, mirror: Path) -> tuple[float, int]:
    """One `pascal-forge build` in a child process: its wall time and peak RSS (KiB)."""
    command = [sys.executable, "-m", "pascal_forge.cli", "build", "--recipes", str(FIXTURES / "recipes")]
    command += ["-m", str(VARIANTS), "--channel", str(root / "channel"), "--source-channel", mirror.as_uri()]
    started = time.monotonic()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.monotonic() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"pascal-forge build failed: {child.stderr.read().decode()}")
    return wall, usage.ru_maxrss


def _pascal_forge_run(root: Path, recipes: Path, mirror: Path) -> Run:
    channel = root / "channel"
    started = time.monotonic()
    prepare_channel(channel)
    plan = make_plan(recipes, VARIANTS, channel)
    options = BuildOptions.for_channel(channel, source_channels=(mirror.as_uri(),))
    report = build_channel(plan, plan.builds, options, PlainReporter(Console(file=io.StringIO())))
    total = time.monotonic() - started
    assert report.ok and report.count("built") == len(plan.builds), "a fixture build failed"
    return Run(total, report.engine_seconds, report.count("built"))


def _rattler_build_run(root: Path, recipes: Path, mirror: Path) -> float:
    """The same outputs, same order, with rattler-build alone: its output folder is the channel.

    Rendering goes through make_plan (rattler-build's renderer plus ordering, as a user of
    the library would do); siblings, build folders and tests are set as pascal-forge sets
    them, so the builds and their staging-cache reuse are identical.
    """
    from pascal_forge.build.engine import _for_this_variant

    output = root / "output"
    # rattler-build's own default, and pascal-forge's: test each package after its build.
    tool_config = ToolConfiguration(test_strategy="native", channel_priority="strict")
    started = time.monotonic()
    plan = make_plan(recipes, VARIANTS, root / "unused")
    for build in plan.builds:
        _for_this_variant(build).run_build(
            tool_config=tool_config, output_dir=output, channels=[mirror.as_uri()], no_build_id=True
        )
    return time.monotonic() - started


def _report(script_seconds: float, runs: list[Run], bare: list[float]) -> None:
    total = statistics.median(r.total for r in runs)
    engine = statistics.median(r.engine for r in runs)
    inside = statistics.median((r.total - r.engine) / r.engine for r in runs)
    per_package = statistics.median((r.total - r.engine) / r.packages for r in runs) * 1000
    label = "as committed" if not script_seconds else f"with {script_seconds:g} s added to each build script"
    print(f"fixture chain {label}: {runs[0].packages} packages, {len(runs)} runs")
    print(f"  pascal-forge: median {total:.3f} s, of which rattler-build builds {engine:.3f} s")
    print(f"  overhead inside the run: {inside:.1%} ({per_package:.1f} ms per package) (goal: < 5 %)")
    # Other work on the machine moves single runs by tenths of a second: best and median.
    for name, pick in (("best", min), ("median", statistics.median)):
        ours, alone = pick(r.total for r in runs), pick(bare)
        print(
            f"  {name} run: pascal-forge {ours:.3f} s, rattler-build alone {alone:.3f} s -> "
            f"end-to-end overhead {ours / alone - 1:.1%}"
        )


if __name__ == "__main__":
    main()
