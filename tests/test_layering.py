"""The package's shape: each wing imports only the wings below it (bench_layout.WING_ORDER), no
module imports itself back, and the sibling wings keep apart (NEVER).

The graph is read with `ast` by benchmarks/bench_layout.py, which prints the same figures per
git revision. Its twins: a tiny pascal_forge written into tmp_path, with one circle and one
arrow from upstream up to recipes, must report both; without those two imports, neither.
"""

from __future__ import annotations

import importlib.util
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "benchmarks" / "bench_layout.py"
# Pairs of wings (importer, imported) that never meet, beside the order: the Pascal proofs do not
# reach into CI generation or bumping, and bumping writes recipes, not CI files.
NEVER = {("checks", "ci"), ("checks", "bump"), ("bump", "ci")}


@pytest.fixture(scope="module")
def bench_layout():
    spec = importlib.util.spec_from_file_location("bench_layout", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def write_package(root: Path, tangled: bool) -> Path:
    files = {
        "__init__.py": "",
        "errors.py": "class PascalForgeError(Exception): ...\n",
        "upstream/__init__.py": "",
        "upstream/index.py": "from ..errors import PascalForgeError\n",
        "recipes/__init__.py": "",
        "recipes/plan.py": "from pascal_forge.upstream import index\n",
        "build/__init__.py": "",
        "build/engine.py": "from . import progress\nfrom ..recipes.plan import index\n",
        # The import that would close engine <-> progress at run time sits in a function.
        "build/progress.py": (
            "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    from .engine import Outcome\n"
            + ("def report():\n    from .engine import Outcome\n" if tangled else "")
        ),
    }
    if tangled:  # upstream reaching up into recipes, inside a function
        files["upstream/index.py"] += "def latest():\n    import pascal_forge.recipes.plan\n"
    for name, text in files.items():
        path = root / "pascal_forge" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "pascal_forge"


def test_a_circle_and_an_arrow_back_up_are_found(bench_layout, tmp_path):
    graph = bench_layout.import_graph(write_package(tmp_path, tangled=True))
    shape = bench_layout.shape_of(graph)
    assert shape.circles == [
        ["pascal_forge.build.engine", "pascal_forge.build.progress"],
        ["pascal_forge.recipes.plan", "pascal_forge.upstream.index"],
    ]
    assert shape.back_up == [("pascal_forge.upstream.index", "pascal_forge.recipes.plan")]
    assert ("pascal_forge.build.progress", "pascal_forge.build.engine") in graph.deferred


def test_a_clean_package_has_neither(bench_layout, tmp_path):
    graph = bench_layout.import_graph(write_package(tmp_path, tangled=False))
    shape = bench_layout.shape_of(graph)
    assert (shape.circles, shape.back_up) == ([], [])
    # `from . import progress` lands on the submodule; TYPE_CHECKING imports stay out of circles.
    assert ("pascal_forge.build.engine", "pascal_forge.build.progress") in graph.arrows
    assert graph.type_checking == {("pascal_forge.build.progress", "pascal_forge.build.engine")}
    assert shape.circles_with_type_checking == [["pascal_forge.build.engine", "pascal_forge.build.progress"]]
    # build.engine -> recipes.plan -> upstream.index -> errors
    assert shape.floors == 4
    assert bench_layout.wing_of("pascal_forge.plan") == "recipes"  # a flat module goes through FLAT_MOVES


def test_the_package_keeps_its_wing_order(bench_layout):
    graph = bench_layout.import_graph(REPO / "scripts" / "pascal_forge")
    shape = bench_layout.shape_of(graph)
    assert shape.unplaced == [], "a module outside every wing: add it to one, or to bench_layout.BASE"
    assert shape.circles_with_type_checking == []
    assert shape.back_up == []
    wing = bench_layout.wing_of
    crossing = sorted((s, t) for s, t in graph.arrows | graph.type_checking if (wing(s), wing(t)) in NEVER)
    assert crossing == []


def test_the_wheel_ships_the_tool_alone():
    """scripts/gpu is the device harness, run from a checkout: it must not ship as a top-level `gpu`."""
    from setuptools import find_namespace_packages

    settings = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = settings["packages"]["find"]
    (where,) = found["where"]
    packages = find_namespace_packages(where=str(REPO / where), include=found.get("include", ("*",)))
    assert "pascal_forge.checks.costmodel" in packages
    assert {name.split(".")[0] for name in packages} == {"pascal_forge"}
    # Without the include, the harness would ship too.
    assert "gpu" in find_namespace_packages(where=str(REPO / where))
    for package, files in settings["package-data"].items():
        for name in files:
            assert (REPO / where / package / name).is_file(), name
