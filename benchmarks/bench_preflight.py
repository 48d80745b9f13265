"""What the solvability preflight of `pascal-forge build` costs for the real plan (60 outputs).

conda-forge cannot be reached from the machines this repository is developed on, so the
channel is generated: for every spec of every planned environment, a record that satisfies
it (and --pad older versions of each name, so the solver has choices to discard, as it does
on conda-forge). Every environment then solves, which costs more than the quick failures the
committed fixture channel gives. Prints:
- the plan (rendering, not part of the preflight) and the preflight's wall time, split into
  repodata fetching and solving, with the number of environments and distinct spec sets;
- the same environments solved one by one with a fresh Gateway each (no shared fetch, no
  de-duplication): what the preflight would cost without either.
Goal: seconds, not minutes.

Run from the repository root: python benchmarks/bench_preflight.py [--pad N] [--repeat N]
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rattler import Gateway, MatchSpec
from rattler import solve as rattler_solve

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from pascal_forge.build.environments import environments_of  # noqa: E402
from pascal_forge.build.solvability import check_solvable  # noqa: E402
from pascal_forge.channel.solve import write_channel  # noqa: E402
from pascal_forge.rattler_run import run_rattler  # noqa: E402
from pascal_forge.recipes.plan import make_plan  # noqa: E402
from pascal_forge.recipes.planned import planned_repodata  # noqa: E402

SUBDIR = "linux-64"


def _satisfying(spec: str) -> tuple[str, str, str] | None:
    """(name, version, build) of a record `spec` matches, or None for a virtual package."""
    match = MatchSpec(spec)
    name = match.name.normalized
    if name.startswith("__"):
        return None
    numbers = re.findall(r"\d+(?:\.\d+)*", str(match.version or "")) or ["1.0"]
    build = str(match.build or "h0_0").replace("*", "h0")
    return name, numbers[0], build


def stub_channel(plan: Any, directory: Path, pad: int) -> tuple[Path, int]:
    ours = {b.output.name for b in plan.builds}
    records: dict[str, dict[str, Any]] = {}
    for build in plan.builds:
        for env in environments_of(build):
            for spec in env.specs:
                found = _satisfying(spec)
                if found is None or found[0] in ours:
                    continue
                name, version, build_string = found
                for v in [version, *(f"0.0.{i}" for i in range(pad))]:
                    filename = f"{name}-{v}-{build_string}.conda"
                    records[filename] = {
                        "name": name,
                        "version": v,
                        "build": build_string,
                        "build_number": 0,
                        "depends": [],
                        "subdir": SUBDIR,
                        "timestamp": 1_765_000_000_000,
                    }
    repodata = {
        SUBDIR: {"info": {"subdir": SUBDIR}, "packages": {}, "packages.conda": records},
        "noarch": {"info": {"subdir": "noarch"}, "packages": {}, "packages.conda": {}},
    }
    return write_channel(repodata, directory), len(records)


def naive(plan: Any, channels: list[str]) -> float:
    """Every environment solved on its own, each with a fresh Gateway."""
    started = time.monotonic()

    async def one(specs: list[str], virtual: list) -> None:
        await rattler_solve(
            sources=channels,
            specs=specs,
            gateway=Gateway(),
            platforms=[SUBDIR, "noarch"],
            virtual_packages=virtual,
        )

    for build in plan.builds:
        for env in environments_of(build):
            run_rattler(one(list(env.specs), env.virtual_packages()))
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pad", type=int, default=200, help="older versions per name (default: 200)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as scratch:
        channel = Path(scratch) / "channel"
        plan = make_plan(ROOT / "recipes", ROOT / "conda_build_config.yaml", channel)
        plan_seconds = time.monotonic() - started
        stub, count = stub_channel(plan, Path(scratch) / "stub", args.pad)
        print(f"plan: {len(plan.builds)} outputs rendered in {plan_seconds:.1f} s")
        print(f"generated channel: {count} records ({args.pad} padding versions per name)")
        runs = []
        for _ in range(args.repeat):
            report = check_solvable(plan, plan.builds, channel, [str(stub)])
            problems = report.findings()
            runs.append((report.seconds, report.fetch_seconds))
        print(report.summary)
        for finding in problems[:5]:
            print(f"  {finding.severity}: {finding.message.splitlines()[0][:200]}")
        wall = statistics.median(r[0] for r in runs)
        fetch = statistics.median(r[1] for r in runs)
        print(
            f"preflight: median {wall:.2f} s over {args.repeat} runs (repodata {fetch:.2f} s), "
            f"{report.environments} environments, {report.distinct} distinct"
        )
        ours = write_channel(planned_repodata(plan), Path(scratch) / "ours")
        print(f"without a shared fetch or de-duplication: {naive(plan, [str(ours), str(stub)]):.2f} s")


if __name__ == "__main__":
    main()
