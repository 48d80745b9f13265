"""How long `pascal-forge plan` takes for the whole matrix (goal: under 2 s).

Run from the repository root: python benchmarks/bench_plan.py [--repeat N]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from pascal_forge.recipes.plan import make_plan

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    timings = []
    with tempfile.TemporaryDirectory() as channel:
        for _ in range(args.repeat):
            start = time.perf_counter()
            plan = make_plan(REPO / "recipes", REPO / "conda_build_config.yaml", Path(channel))
            timings.append(time.perf_counter() - start)
    print(f"plan: {len(plan.builds)} packages from {len({b.output.recipe for b in plan.builds})} recipes")
    print(
        f"plan time over {args.repeat} runs: median {statistics.median(timings) * 1000:.1f} ms, "
        f"max {max(timings) * 1000:.1f} ms (goal: < 2000 ms)"
    )


if __name__ == "__main__":
    main()
