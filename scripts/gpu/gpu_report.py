"""Tables from the JSON reports of run_vllm_numerics.py.

python gpu_report.py --summary REPORTS_DIR   # a few lines per run (printed on the GPU machine)
python gpu_report.py REPORTS_DIR             # one markdown table per run (for docs/gpu-results)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def load_reports(directory: Path) -> dict[str, dict]:
    return {path.stem: json.loads(path.read_text()) for path in sorted(directory.glob("*.json"))}


def _number(value: float) -> str:
    return "inf" if value == float("inf") else f"{value:.2e}"


def markdown_table(report: dict) -> str:
    lines = [
        "| case | shape | dtype | max abs error | max rel error | bound | shared memory (B) "
        "| kernels (shared B) | pass |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in report["rows"]:
        verdict = "pass" if row["passed"] else f"**FAIL** {row['error']}".strip()
        lines.append(
            f"| {row['case']} | {row['shape']} | {row['dtype']} | {_number(row['max_abs'])} | "
            f"{_number(row['max_rel'])} | {row['bound']:g} | {row['shared']} | {row['kernels']} | {verdict} |"
        )
    return "\n".join(lines)


def summary(name: str, report: dict) -> str:
    rows = report["rows"]
    failed = [r for r in rows if not r["passed"]]
    passed = f"{len(rows) - len(failed)}/{len(rows)} pass"
    head = f"{name}: {passed}, triton {report['triton']}, {report['seconds']} s"
    shared = max((r["shared"] for r in rows), default=0)
    lines = [head + f", max shared {shared} B"]
    for row in failed[:12]:
        lines.append(
            f"  FAIL {row['case']}: abs {_number(row['max_abs'])} bound {row['bound']:g} "
            f"shared {row['shared']} {row['error'][:160]}"
        )
    if len(failed) > 12:
        lines.append(f"  ... {len(failed) - 12} more")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("reports", type=Path)
    parser.add_argument("--summary", action="store_true")
    args = parser.parse_args()
    reports = load_reports(args.reports)
    for name, report in reports.items():
        if args.summary:
            print(summary(name, report))
        else:
            print(
                f"### {name}\n\ntriton {report['triton']}, torch {report['torch']}, {report['device']}, "
                f"{report['seconds']} s; stubbed at import: {', '.join(report['stubbed']) or 'none'}\n"
            )
            print(markdown_table(report) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
