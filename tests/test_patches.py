"""The patch-series check with real GNU patch: a clean series applies, a stale one names its hunk."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from pascal_forge.recipes.patches import PatchError, apply_series, check_series

ORIGINAL = "".join(f"line {n}\n" for n in range(1, 31))


def _tree(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    (tree / "triton" / "language").mkdir(parents=True)
    (tree / "triton" / "language" / "core.py").write_text(ORIGINAL)
    return tree


def _patch(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body).lstrip())
    return path


GOOD = """
    From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001
    Subject: [PATCH] change line 10

    ---
    diff --git a/python/triton/language/core.py b/python/triton/language/core.py
    --- a/python/triton/language/core.py
    +++ b/python/triton/language/core.py
    @@ -9,3 +9,3 @@
     line 9
    -line 10
    +line ten
     line 11
"""

# Its context no longer matches: applying it would need fuzz.
STALE = """
    diff --git a/python/triton/language/core.py b/python/triton/language/core.py
    --- a/python/triton/language/core.py
    +++ b/python/triton/language/core.py
    @@ -9,3 +9,3 @@
     line 9
    -line 10
    +line ten
     line 11
    @@ -19,3 +19,3 @@
     line 19 was renamed upstream
    -line 20
    +line twenty
     line 21
"""

WHEEL_MAP = {"python/triton/": "triton/"}


def test_series_applies_through_the_wheel_path_map(tmp_path):
    tree = _tree(tmp_path)
    apply_series([_patch(tmp_path, "0001-good.patch", GOOD)], tree, WHEEL_MAP)
    assert "line ten\n" in (tree / "triton/language/core.py").read_text()


def test_check_series_leaves_the_tree_alone(tmp_path):
    tree = _tree(tmp_path)
    check_series([_patch(tmp_path, "0001-good.patch", GOOD)], tree, WHEEL_MAP)
    assert (tree / "triton/language/core.py").read_text() == ORIGINAL


def test_stale_hunk_is_named_with_file_and_number(tmp_path):
    tree = _tree(tmp_path)
    with pytest.raises(PatchError) as error:
        apply_series([_patch(tmp_path, "0002-stale.patch", STALE)], tree, WHEEL_MAP)
    message = str(error.value)
    assert "0002-stale.patch does not apply without fuzz" in message
    assert "hunk #2 of triton/language/core.py" in message


def test_patch_already_applied_upstream_is_reported(tmp_path):
    tree = _tree(tmp_path)
    patch = _patch(tmp_path, "0001-good.patch", GOOD)
    apply_series([patch], tree, WHEEL_MAP)
    with pytest.raises(PatchError, match="already contains the change"):
        apply_series([patch], tree, WHEEL_MAP)


def test_patch_for_a_file_the_artifact_lacks_fails(tmp_path):
    tree = _tree(tmp_path)
    with pytest.raises(PatchError, match="0001-good.patch"):
        # Without the path map the source-tree path python/triton/... does not exist in a wheel.
        apply_series([_patch(tmp_path, "0001-good.patch", GOOD)], tree, {})


def test_missing_patch_file_fails_loudly(tmp_path):
    with pytest.raises(PatchError, match="listed but missing"):
        apply_series([tmp_path / "0003-gone.patch"], _tree(tmp_path), WHEEL_MAP)
