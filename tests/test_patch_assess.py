"""What each patch of a series does on a new release, with real GNU patch: applies, applies with
an offset (and is refreshed), is already upstream, or fails naming the hunk and its context."""

from __future__ import annotations

import textwrap
from pathlib import Path

from pascal_forge.recipes.patches import PatchStatus, assess_series

BASE = [f"line {n}" for n in range(1, 31)]
WHEEL_MAP = {"src/demo/": "demo/"}

# Changes line 10 and line 20 of src/demo/core.py (demo/core.py in the wheel tree).
TWO_HUNKS = """
    From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001
    Subject: [PATCH] change lines 10 and 20

    Why: the header and message must survive a refresh.
    ---
     src/demo/core.py | 4 ++--

    diff --git a/src/demo/core.py b/src/demo/core.py
    --- a/src/demo/core.py
    +++ b/src/demo/core.py
    @@ -8,5 +8,5 @@ def context():
     line 8
     line 9
    -line 10
    +line ten
     line 11
     line 12
    @@ -18,5 +18,5 @@ def context():
     line 18
     line 19
    -line 20
    +line twenty
     line 21
     line 22
    --
    2.43.0
"""


def _tree(tmp_path: Path, lines: list[str], name: str = "tree") -> Path:
    tree = tmp_path / name
    (tree / "demo").mkdir(parents=True)
    (tree / "demo" / "core.py").write_text("\n".join(lines) + "\n")
    return tree


def _patch(tmp_path: Path, body: str, name: str = "0001-change.patch") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body).lstrip())
    return path


def test_a_clean_patch_applies_and_its_change_is_in_the_tree(tmp_path):
    tree = _tree(tmp_path, BASE)
    [outcome] = assess_series([_patch(tmp_path, TWO_HUNKS)], tree, WHEEL_MAP)
    assert (outcome.status, outcome.summary, outcome.needs_work) == (PatchStatus.APPLIES, "applies", False)
    assert "line ten\n" in (tree / "demo/core.py").read_text()


def test_an_offset_is_reported_and_the_refreshed_patch_applies_without_one(tmp_path):
    moved = ["new 1", "new 2", "new 3", *BASE]
    patch = _patch(tmp_path, TWO_HUNKS)
    [outcome] = assess_series([patch], _tree(tmp_path, moved), WHEEL_MAP)
    assert outcome.status is PatchStatus.OFFSET
    assert outcome.summary == "applies with offset 3 (refreshed)"
    assert not outcome.needs_work
    refreshed = outcome.refreshed
    assert refreshed is not None
    assert "@@ -11,5 +11,5 @@ def context():" in refreshed
    assert "@@ -21,5 +21,5 @@ def context():" in refreshed
    # Only the hunk headers moved: message, diffstat and signature are as they were.
    assert refreshed.replace("-11,5 +11,5", "-8,5 +8,5").replace("-21,5 +21,5", "-18,5 +18,5") == (
        patch.read_text()
    )
    again = _patch(tmp_path, refreshed, "0001-refreshed.patch")
    [after] = assess_series([again], _tree(tmp_path, moved, "fresh"), WHEEL_MAP)
    assert after.status is PatchStatus.APPLIES


def test_twin_the_stock_patch_on_the_moved_file_still_needs_the_offset(tmp_path):
    moved = ["new 1", "new 2", "new 3", *BASE]
    [outcome] = assess_series([_patch(tmp_path, TWO_HUNKS)], _tree(tmp_path, moved), WHEEL_MAP)
    assert outcome.status is not PatchStatus.APPLIES


def test_a_patch_upstream_already_made_reverse_applies(tmp_path):
    upstream = [("line ten" if n == "line 10" else "line twenty" if n == "line 20" else n) for n in BASE]
    [outcome] = assess_series([_patch(tmp_path, TWO_HUNKS)], _tree(tmp_path, upstream), WHEEL_MAP)
    assert outcome.status is PatchStatus.UPSTREAM
    assert outcome.summary == "already upstream (it reverse-applies)"
    assert outcome.needs_work


def test_the_same_change_with_other_context_upstream_is_already_upstream(tmp_path):
    # Upstream made the change and also rewrote the lines around it: no reverse-apply.
    upstream = [
        {"line 9": "nine", "line 10": "line ten", "line 19": "nineteen", "line 20": "line twenty"}.get(n, n)
        for n in BASE
    ]
    [outcome] = assess_series([_patch(tmp_path, TWO_HUNKS)], _tree(tmp_path, upstream), WHEEL_MAP)
    assert outcome.summary == "already upstream (upstream has the same change)"


def test_twin_other_context_without_the_change_fails_naming_hunk_and_line(tmp_path):
    upstream = [{"line 9": "nine", "line 19": "nineteen"}.get(n, n) for n in BASE]
    [outcome] = assess_series([_patch(tmp_path, TWO_HUNKS)], _tree(tmp_path, upstream), WHEEL_MAP)
    assert outcome.status is PatchStatus.FAILS
    assert [(f.file, f.hunk, f.context) for f in outcome.failures] == [
        ("src/demo/core.py", 1, "line 9"),
        ("src/demo/core.py", 2, "line 19"),
    ]
    assert outcome.summary.startswith("fails at src/demo/core.py hunk #1: no longer matches 'line 9'")


def test_a_later_context_line_that_changed_is_the_one_named(tmp_path):
    upstream = [{"line 11": "eleven"}.get(n, n) for n in BASE]
    [outcome] = assess_series([_patch(tmp_path, TWO_HUNKS)], _tree(tmp_path, upstream), WHEEL_MAP)
    assert [(f.hunk, f.context) for f in outcome.failures] == [(1, "line 11")]


def test_a_patch_for_a_file_upstream_removed_fails_naming_the_file(tmp_path):
    tree = _tree(tmp_path, BASE)
    (tree / "demo/core.py").unlink()
    [outcome] = assess_series([_patch(tmp_path, TWO_HUNKS)], tree, WHEEL_MAP)
    assert outcome.summary == "fails at src/demo/core.py (the file does not exist)"


def test_a_failing_patch_is_left_out_and_the_series_goes_on(tmp_path):
    upstream = [{"line 9": "nine"}.get(n, n) for n in BASE]
    tree = _tree(tmp_path, upstream)
    later = TWO_HUNKS.replace("line ten", "line TEN").replace("-line 10", "-line 10")
    outcomes = assess_series(
        [_patch(tmp_path, TWO_HUNKS, "0001-a.patch"), _patch(tmp_path, later, "0002-b.patch")],
        tree,
        WHEEL_MAP,
    )
    assert [o.status for o in outcomes] == [PatchStatus.FAILS, PatchStatus.FAILS]
    # Neither was applied halfway: the tree is as upstream shipped it.
    assert (tree / "demo/core.py").read_text() == "\n".join(upstream) + "\n"
