"""The bump report: Markdown for a pull request or issue body, and a short terminal table.

Patch names, requirement lines and upstream context lines are untrusted text: the Markdown
puts them in code spans that no backtick in them can close, and the terminal table prints
them as rich Text, never as markup.
"""

from __future__ import annotations

import re

from rich.console import Group
from rich.table import Table
from rich.text import Text

from ..recipes.patches import PatchOutcome, PatchStatus
from .check import BumpReport, RequirementChange, StackPin, UncheckableRelease


def to_markdown(report: BumpReport, *, written: list[str] | None = None) -> str:
    """The whole report; `written` lists what a (non --check) bump changed in the recipe."""
    lines = [
        f"## pascal-forge bump {report.recipe} {report.new_version}",
        "",
        f"The {report.old_version} patch series of `recipes/{report.recipe}`, applied without fuzz to "
        f"{_code(report.artifact.filename)} (sha256 {_code(report.artifact.sha256)}):",
        "",
        "| # | patch | status |",
        "|---|---|---|",
    ]
    for number, outcome in enumerate(report.outcomes, start=1):
        lines.append(f"| {number} | {_cell(_code(outcome.patch.name))} | {_cell(_status(outcome))} |")
    if not report.outcomes:
        lines[-2:] = [f"The {report.old_version} series has no patches."]
    failing = [o for o in report.outcomes if o.status is PatchStatus.FAILS]
    if failing:
        lines += ["", "### What no longer matches", ""]
        for outcome in failing:
            lines.append(f"- {_code(outcome.patch.name)}")
            for failure in outcome.failures:
                where = f"hunk #{failure.hunk} of " if failure.hunk is not None else ""
                lines.append(f"  - {where}{_code(failure.file)}: {_code(failure.context)}")
    upstream = [o for o in report.outcomes if o.status is PatchStatus.UPSTREAM]
    if upstream:
        lines += ["", "Already upstream (drop them from the new series): "]
        lines[-1] += ", ".join(_code(o.patch.name) for o in upstream)
    lines += ["", f"### Pins that decide the stack ({_code(report.metadata_from or 'no metadata')})", ""]
    lines += [f"- {_code(p.requirement)}: {_pin_verdict(p)}" for p in report.pins] or ["- none"]
    lines += ["", "### What the channel would also need to bump", ""]
    lines += [
        f"- {_code(p.recipe)} to a version matching {_code(p.requirement)}" for p in report.also_bump
    ] or ["- nothing: the recipes carry versions every pin accepts"]
    lines += ["", f"### Requirement lines new since {report.old_version}", ""]
    lines += [_change_item(change) for change in report.new_requirements] or ["- none"]
    if report.dropped_requirements:
        lines += ["", f"### Requirements {report.old_version} had and {report.new_version} dropped", ""]
        lines += [f"- {_code(line)}" for line in report.dropped_requirements]
    if written:
        lines += ["", "### Written", ""] + [f"- {item}" for item in written]
    return "\n".join(lines) + "\n"


def uncheckable_markdown(error: UncheckableRelease) -> str:
    """The report for a newer release that bump could not check: what is missing, what exists."""
    lines = [
        f"## pascal-forge bump {error.recipe} {error.new_version}",
        "",
        f"**{_code(error.project)} {_code(error.new_version)} is out, and the {error.old_version} "
        "series could not be checked against it.** A person decides what happens next.",
        "",
        f"- why: {_code(error.reason)}",
        f"- to check it: point `extra: patch-check:` of `recipes/{error.recipe}` at one of the files "
        f"below, or wait for upstream to publish the missing one; `recipes/{error.recipe}` keeps "
        f"{_code(error.old_version)} meanwhile.",
        "",
        f"### Files of {error.project} {error.new_version} on the index",
        "",
    ]
    lines += [f"- {_code(name)}" for name in error.files] or ["- none"]
    return "\n".join(lines) + "\n"


def terminal_view(report: BumpReport) -> Group:
    """A short table: one row per patch, then one line per pin and the verdict."""
    heading = Text(f"{report.recipe} {report.old_version} series on {report.artifact.filename}")
    table = Table(show_lines=False)
    table.add_column("#", justify="right")
    table.add_column("patch", no_wrap=True)
    table.add_column("status")
    for number, outcome in enumerate(report.outcomes, start=1):
        table.add_row(str(number), Text(outcome.patch.name), Text(_status(outcome)))
    rows: list[Table | Text] = [heading, table] if report.outcomes else [heading, Text("no patches")]
    for pin in report.pins:
        rows.append(Text(f"pin {pin.requirement}: {_pin_verdict(pin)}"))
    for pin in report.also_bump:
        rows.append(Text(f"also bump: {pin.recipe} ({pin.requirement})"))
    rows.append(Text(f"{len(report.new_requirements)} requirement line(s) new since {report.old_version}:"))
    rows += [Text(f"  {change.describe()}") for change in report.new_requirements]
    rows += [Text(f"  dropped: {line}") for line in report.dropped_requirements]
    work = sum(o.needs_work for o in report.outcomes)
    rows.append(Text(f"{work} patch(es) need a person" if work else "the series applies whole"))
    return Group(*rows)


def _change_item(change: RequirementChange) -> str:
    was = f" (was {_code(change.old)})" if change.old else " (new project)"
    return f"- {_code(change.new)}{was}"


def _status(outcome: PatchOutcome) -> str:
    if outcome.status is PatchStatus.FAILS:
        first = outcome.failures[0]
        where = f"{first.file} hunk #{first.hunk}" if first.hunk is not None else f"{first.file} (missing)"
        more = f" (+{len(outcome.failures) - 1} more)" if len(outcome.failures) > 1 else ""
        return f"fails at {where}{more}"
    return outcome.summary


def _pin_verdict(pin: StackPin) -> str:
    carried = ", ".join(pin.carried)
    verb = "satisfied" if pin.satisfied else "NOT satisfied"
    return f"{verb} by recipe {pin.recipe} (carries {carried})"


def _code(text: str) -> str:
    """A Markdown code span no backtick inside `text` can close."""
    text = " ".join(text.split())
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or not text else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")
