"""The compile suite as a table: kernel x capability -> ok/fail, stock next to patched."""

from __future__ import annotations

from collections.abc import Sequence

from .suite import CaseResult, SuiteRun


def _cell(result: CaseResult) -> str:
    if result.status == "ok":
        return "ok"
    if result.refusal and result.as_expected:
        return "refused"
    return "fail"


def format_table(runs: Sequence[SuiteRun], capabilities: Sequence[int]) -> str:
    """One row per case, one column per run and capability, then the counts and the stock errors."""
    first = runs[0]
    cases = list(dict.fromkeys(result.case for result in first.results))
    headers = ["kernel", *(f"{run.label} sm_{cap}" for run in runs for cap in capabilities), "patch concern"]
    rows = []
    for case in cases:
        sample = first.result(case, capabilities[0])
        note = sample.fixed_by or ("known: " + sample.known_failure if sample.known_failure else "")
        cells = [_cell(run.result(case, cap)) for run in runs for cap in capabilities]
        rows.append([case, *cells, note])
    widths = [max(len(str(row[i])) for row in [headers, *rows]) for i in range(len(headers))]
    lines = [
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [headers, ["-" * w for w in widths], *rows]
    ]
    lines.append("")
    for run in runs:
        for cap in capabilities:
            results = [r for r in run.results if r.capability == cap]
            ok = sum(r.status == "ok" for r in results)
            lines.append(f"{run.label} sm_{cap}: {ok}/{len(results)} compiled")
    errors = {}
    for run in runs:
        for result in run.results:
            if result.status == "fail":
                errors.setdefault(f"{run.label}: {result.detail}", []).append(result.case)
    if errors:
        lines.append("")
        lines.append("errors (first case of each):")
        for error, failing in errors.items():
            lines.append(f"  {len(failing):4d} x {error[:160]}  e.g. {failing[0]}")
    return "\n".join(lines)
