"""The shape of the pascal_forge package and what `pascal-forge --help` costs to start, per git revision.

Run from anywhere in the repository: python benchmarks/bench_layout.py REV [REV ...] [--repeat N]
(e.g. `7a83303 HEAD`: the flat layout and the wings). Each revision's scripts/ is taken with
`git archive REV scripts` into a scratch folder, so the working tree is not read. Prints, per
revision:
- the import graph, read with `ast` (nothing is imported): modules (a package's __init__.py is
  the package's module), entries at the package's top level, arrows (distinct importer ->
  imported pairs of pascal_forge modules, from module- and function-level imports, relative or
  absolute; `from . import x` lands on x where x is a submodule), the arrows that exist only
  under `if TYPE_CHECKING:` (counted apart, left out of everything else), circles (strongly
  connected modules), floors (modules on the longest import chain once each circle is one
  node), the arrows between wings, and the arrows that run back up: from a module to one whose
  wing stands higher in WING_ORDER (--order). A module's wing is its first name below
  pascal_forge; a flat module of the old layout is first moved through FLAT_MOVES.
- the start-up of `python -m pascal_forge --help` with PYTHONPATH at that tree: median and
  minimum wall time over --repeat runs after one warm-up run (which also writes the bytecode),
  the revisions taking turns run by run, and the modules one run with `-X importtime` imports
  (pascal_forge's and all).
Timings are wall-clock on whatever machine runs this, other load included; compare revisions
within one run. A markdown table of the figures side by side comes last.
"""

from __future__ import annotations

import argparse
import ast
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "pascal_forge"
WING_ORDER = ("base", "upstream", "channel", "recipes", "build", "bump", "ci", "checks", "console", "cli")
BASE = frozenset({"__init__", "errors", "pascal", "safe_text", "util", "defaults", "rattler_run"})
CLI = frozenset({"cli", "__main__"})
UNPLACED = "?"
# Where each module of the flat layout (7a83303) went in the wings (a4b1478).
FLAT_MOVES = {
    "recipes": "recipes.recipe",
    "variants": "recipes.variants",
    "render": "recipes.render",
    "plan": "recipes.plan",
    "patches": "recipes.patches",
    "index": "upstream.index",
    "sources": "upstream.artifacts",
    "build": "build.engine",
    "preflight": "build.preflight",
    "solvability": "build.solvability",
    "environments": "build.environments",
    "reachability": "build.reachability",
    "progress": "build.progress",
    "channel": "channel.local",
    "solve": "channel.solve",
    "doctor": "channel.doctor",
    "conda_config": "channel.condarc",
    "publish": "channel.publish",
    "mirror": "channel.mirror",
    "forge_config": "ci.forge_config",
    "rerender": "ci.rerender",
    "workflow": "ci.workflow",
    "bump_workflow": "ci.bump_workflow",
    "bump": "bump.check",
    "bump_report": "bump.report",
    "bump_write": "bump.write",
    "pascal_kernels": "checks.triton",
    "vllm_checks": "checks.vllm.compile",
    "vllm_kernel_cases": "checks.vllm.cases",
    "vllm_engine": "checks.vllm.engine",
    "costmodel": "checks.costmodel",
    "bench": "checks.bench",
    "display": "safe_text",
}

Arrow = tuple[str, str]


@dataclass
class ImportGraph:
    modules: list[str]
    entries: Counter[str]  # the package folder's top level: ".py", "folder", "other"
    statements: int  # import statements that name another pascal_forge module, TYPE_CHECKING ones not
    arrows: set[Arrow]  # imported when the code runs (module or function level)
    deferred: set[Arrow]  # of those, the arrows imported only inside functions
    type_checking: set[Arrow]  # the arrows that exist only under `if TYPE_CHECKING:`


@dataclass
class Shape:
    circles: list[list[str]]
    circles_with_type_checking: list[list[str]]
    floors: int
    longest: list[list[str]]  # one longest chain, top first; a circle is one step
    back_up: list[Arrow]
    between_wings: Counter[Arrow]  # (importer's wing, imported wing) -> arrows
    unplaced: list[str]


@dataclass
class Startup:
    runs: int
    median_ms: float
    min_ms: float
    own_modules: int
    all_modules: int


@dataclass
class Revision:
    label: str
    graph: ImportGraph
    shape: Shape
    startup: Startup


# --- reading the import graph -------------------------------------------------------------------


def module_files(package_dir: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every .py below the package folder."""
    modules = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = path.relative_to(package_dir.parent).with_suffix("").parts
        if "__pycache__" in parts:
            continue
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


class _ImportFinder(ast.NodeVisitor):
    """Every import statement, with whether it sits under TYPE_CHECKING and inside a function."""

    def __init__(self) -> None:
        self.found: list[tuple[ast.Import | ast.ImportFrom, bool, bool]] = []
        self._type_checking = False
        self._in_function = False

    def visit_If(self, node: ast.If) -> None:
        if not _is_type_checking(node.test):
            self.generic_visit(node)
            return
        saved, self._type_checking = self._type_checking, True
        for statement in node.body:
            self.visit(statement)
        self._type_checking = saved
        for statement in node.orelse:
            self.visit(statement)

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        saved, self._in_function = self._in_function, True
        self.generic_visit(node)
        self._in_function = saved

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Import(self, node: ast.Import | ast.ImportFrom) -> None:
        self.found.append((node, self._type_checking, self._in_function))

    visit_ImportFrom = visit_Import


def _named(
    node: ast.Import | ast.ImportFrom, importer: str, is_package: bool, modules: Iterable[str]
) -> Iterator[str]:
    """The dotted names an import statement asks for, relative ones resolved."""
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
        return
    if node.level:
        package = importer if is_package else importer.rpartition(".")[0]
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        base = f"{package}.{node.module}" if node.module else package
    else:
        base = node.module or ""
    for alias in node.names:
        submodule = f"{base}.{alias.name}"
        yield submodule if submodule in modules else base


def _landing(name: str, modules: Iterable[str]) -> str | None:
    """The pascal_forge module an import of `name` lands in (its longest prefix that is one), or None."""
    if name != PACKAGE and not name.startswith(PACKAGE + "."):
        return None
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _top_level_entries(package_dir: Path) -> Counter[str]:
    kinds: Counter[str] = Counter()
    for entry in package_dir.iterdir():
        if entry.name == "__pycache__":
            continue
        kinds["folder" if entry.is_dir() else ".py" if entry.suffix == ".py" else "other"] += 1
    return kinds


def import_graph(package_dir: Path) -> ImportGraph:
    files = module_files(package_dir)
    statements = 0
    runtime: dict[Arrow, bool] = {}  # arrow -> only inside functions so far
    type_checking: set[Arrow] = set()
    for importer, path in files.items():
        finder = _ImportFinder()
        finder.visit(ast.parse(path.read_bytes(), filename=str(path)))
        for node, under_type_checking, in_function in finder.found:
            names = _named(node, importer, path.name == "__init__.py", files)
            targets = {_landing(name, files) for name in names} - {None, importer}
            statements += bool(targets) and not under_type_checking
            for target in targets:
                arrow = (importer, target)
                if under_type_checking:
                    type_checking.add(arrow)
                else:
                    runtime[arrow] = runtime.get(arrow, True) and in_function
    return ImportGraph(
        modules=sorted(files),
        entries=_top_level_entries(package_dir),
        statements=statements,
        arrows=set(runtime),
        deferred={arrow for arrow, deferred in runtime.items() if deferred},
        type_checking=type_checking - set(runtime),
    )


# --- its shape ----------------------------------------------------------------------------------


def wing_of(module: str) -> str:
    """The wing of a dotted module name; a flat module of the old layout goes through FLAT_MOVES."""
    parts = module.split(".")[1:]
    first = parts[0] if parts else "__init__"
    if first in BASE:
        return "base"
    if first in CLI:
        return "cli"
    if first in WING_ORDER:
        return first
    if first in FLAT_MOVES:
        return wing_of(f"{PACKAGE}.{FLAT_MOVES[first]}")
    return UNPLACED


def strong_components(nodes: Iterable[str], arrows: Iterable[Arrow]) -> list[list[str]]:
    """Tarjan's strongly connected components, each sorted."""
    successors: dict[str, list[str]] = {node: [] for node in nodes}
    for source, target in sorted(arrows):
        successors[source].append(target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in successors[node]:
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            components.append(sorted(component))

    for node in successors:
        if node not in index:
            visit(node)
    return components


def longest_chain(components: list[list[str]], arrows: Iterable[Arrow]) -> list[list[str]]:
    """One longest import chain over the components (circles collapsed), importer first."""
    component_of = {member: i for i, component in enumerate(components) for member in component}
    successors: dict[int, set[int]] = {i: set() for i in range(len(components))}
    for source, target in arrows:
        if component_of[source] != component_of[target]:
            successors[component_of[source]].add(component_of[target])
    below: dict[int, list[int]] = {}  # component -> the longest chain it starts

    def chain(i: int) -> list[int]:
        if i not in below:
            tails = [chain(j) for j in sorted(successors[i], key=components.__getitem__)]
            below[i] = [i, *max(tails, key=len, default=[])]
        return below[i]

    starts = sorted(range(len(components)), key=components.__getitem__)
    longest = max((chain(i) for i in starts), key=len, default=[])
    return [components[i] for i in longest]


def shape_of(graph: ImportGraph, order: tuple[str, ...] = WING_ORDER) -> Shape:
    rank = {wing: i for i, wing in enumerate(order)}
    components = strong_components(graph.modules, graph.arrows)
    chain = longest_chain(components, graph.arrows)
    with_type_checking = strong_components(graph.modules, graph.arrows | graph.type_checking)
    back_up = [
        (source, target)
        for source, target in sorted(graph.arrows)
        if wing_of(source) in rank
        and wing_of(target) in rank
        and rank[wing_of(target)] > rank[wing_of(source)]
    ]
    return Shape(
        circles=sorted(c for c in components if len(c) > 1),
        circles_with_type_checking=sorted(c for c in with_type_checking if len(c) > 1),
        floors=len(chain),
        longest=chain,
        back_up=back_up,
        between_wings=Counter((wing_of(s), wing_of(t)) for s, t in graph.arrows),
        unplaced=[m for m in graph.modules if wing_of(m) not in rank],
    )


# --- start-up -----------------------------------------------------------------------------------


def _python(scripts: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """This Python with PYTHONPATH at the tree alone and -X importtime off unless asked for."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPROFILEIMPORTTIME"}
    env["PYTHONPATH"] = str(scripts)
    return subprocess.run(
        [sys.executable, *args],
        cwd=scripts.parent,  # `-m` puts the working folder first on sys.path: keep the checkout off it
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )


def _help(scripts: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    return _python(scripts, *flags, "-m", PACKAGE, "--help")


def _check_origin(scripts: Path) -> None:
    """Fail if `import pascal_forge` finds another copy than the tree's (an editable install first)."""
    found = _python(scripts, "-c", f"import {PACKAGE}; print({PACKAGE}.__file__)").stdout.strip()
    if not Path(found).is_relative_to(scripts):
        raise SystemExit(f"{PACKAGE} is imported from {found}, not from {scripts}")


def startups(trees: list[Path], repeat: int) -> list[Startup]:
    """--help timed `repeat` times per tree, the trees taking turns so that other load falls on all alike."""
    for scripts in trees:
        _check_origin(scripts)
        _help(scripts)  # warm-up; writes the bytecode
    timings: list[list[float]] = [[] for _ in trees]
    for _ in range(repeat):
        for scripts, runs in zip(trees, timings, strict=True):
            started = time.perf_counter()
            _help(scripts)
            runs.append((time.perf_counter() - started) * 1000)
    return [_startup(scripts, runs) for scripts, runs in zip(trees, timings, strict=True)]


def _startup(scripts: Path, timings: list[float]) -> Startup:
    lines = [line for line in _help(scripts, "-X", "importtime").stderr.splitlines() if "|" in line]
    imported = [line.rsplit("|", 1)[1].strip() for line in lines[1:]]  # lines[0] is the header
    return Startup(
        runs=len(timings),
        median_ms=statistics.median(timings),
        min_ms=min(timings),
        own_modules=sum(PACKAGE in name for name in imported),
        all_modules=len(imported),
    )


# --- the revisions ------------------------------------------------------------------------------


def _git(repo: Path, *args: str) -> bytes:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, check=True).stdout


def _label(repo: Path, rev: str) -> str:
    commit = _git(repo, "rev-parse", "--short", f"{rev}^{{commit}}").decode().strip()
    return commit if commit.startswith(rev) else f"{rev} ({commit})"


def measure(repo: Path, revs: list[str], repeat: int, order: tuple[str, ...]) -> list[Revision]:
    """Each revision's scripts/ from `git archive` into a scratch folder, its graph and its start-up."""
    with tempfile.TemporaryDirectory(prefix="bench-layout-") as scratch:
        trees = []
        for i, rev in enumerate(revs):
            into = Path(scratch) / str(i)
            into.mkdir()
            subprocess.run(["tar", "-x", "-C", into], input=_git(repo, "archive", rev, "scripts"), check=True)
            trees.append(into / "scripts")
        graphs = [import_graph(scripts / PACKAGE) for scripts in trees]  # before __pycache__ appears
        timed = startups(trees, repeat)
    return [
        Revision(_label(repo, rev), graph, shape_of(graph, order), start)
        for rev, graph, start in zip(revs, graphs, timed, strict=True)
    ]


# --- printing -----------------------------------------------------------------------------------


def _short(module: str) -> str:
    return module.removeprefix(PACKAGE + ".")


def _circle(members: list[str]) -> str:
    return " <-> ".join(_short(m) for m in members) if len(members) > 1 else _short(members[0])


def _wing_matrix(between: Counter[Arrow], order: tuple[str, ...]) -> list[str]:
    present = [w for w in (*order, UNPLACED) if any(w in pair for pair in between)]
    width = max(len(w) for w in present) + 1
    lines = ["".rjust(width) + "".join(w.rjust(width) for w in present)]
    for row in present:
        cells = (str(between[row, col] or ".").rjust(width) for col in present)
        lines.append(row.rjust(width) + "".join(cells))
    return lines


def report(revision: Revision, order: tuple[str, ...]) -> None:
    graph, shape, start = revision.graph, revision.shape, revision.startup
    entries = graph.entries
    print(f"== {revision.label} ==")
    print(
        f"modules: {len(graph.modules)}; top-level entries: {sum(entries.values())} "
        f"({entries['.py']} .py, {entries['folder']} folders, {entries['other']} other)"
    )
    print(
        f"arrows: {len(graph.arrows)} ({len(graph.deferred)} only inside functions), "
        f"from {graph.statements} import statements; {len(graph.type_checking)} more only under TYPE_CHECKING"
    )
    print(f"circles: {len(shape.circles)}" + "".join(f"\n  {_circle(c)}" for c in shape.circles))
    if shape.circles_with_type_checking != shape.circles:
        circles = shape.circles_with_type_checking
        print(f"  (with the TYPE_CHECKING arrows: {'; '.join(_circle(c) for c in circles)})")
    print(f"floors: {shape.floors}: " + " -> ".join(_circle(c) for c in shape.longest))
    print(f"arrows that run back up ({' < '.join(order)}): {len(shape.back_up)}")
    for source, target in shape.back_up:
        print(f"  {_short(source)} [{wing_of(source)}] -> {_short(target)} [{wing_of(target)}]")
    if shape.unplaced:
        print(f"modules in no wing (left out of the above): {', '.join(map(_short, shape.unplaced))}")
    print("arrows between wings (row imports column; right of the diagonal runs back up):")
    print("\n".join("  " + line for line in _wing_matrix(shape.between_wings, order)))
    print(
        f"--help start-up over {start.runs} runs: median {start.median_ms:.0f} ms, "
        f"min {start.min_ms:.0f} ms; imports {start.own_modules} pascal_forge modules of {start.all_modules}"
    )
    print()


def summary(revisions: list[Revision]) -> None:
    rows = {
        "modules": lambda r: len(r.graph.modules),
        "top-level entries": lambda r: sum(r.graph.entries.values()),
        "arrows": lambda r: len(r.graph.arrows),
        "arrows only under TYPE_CHECKING": lambda r: len(r.graph.type_checking),
        "circles": lambda r: len(r.shape.circles),
        "floors": lambda r: r.shape.floors,
        "arrows that run back up": lambda r: len(r.shape.back_up),
        "`--help` median (ms)": lambda r: f"{r.startup.median_ms:.0f}",
        "`--help` min (ms)": lambda r: f"{r.startup.min_ms:.0f}",
        "pascal_forge modules `--help` imports": lambda r: r.startup.own_modules,
        "modules `--help` imports (all)": lambda r: r.startup.all_modules,
    }
    print("| |" + "".join(f" {r.label} |" for r in revisions))
    print("|---|" + "---:|" * len(revisions))
    for name, value in rows.items():
        print(f"| {name} |" + "".join(f" {value(r)} |" for r in revisions))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "revisions", nargs="+", metavar="REV", help="git revisions to measure, e.g. 7a83303 HEAD"
    )
    parser.add_argument("--repeat", type=int, default=10, help="timed --help runs per revision (default: 10)")
    parser.add_argument(
        "--order",
        default=",".join(WING_ORDER),
        help=f"the wings bottom to top, comma-separated (default: {','.join(WING_ORDER)})",
    )
    args = parser.parse_args()
    order = tuple(args.order.split(","))
    if sorted(order) != sorted(WING_ORDER):
        parser.error(f"--order must name each of {', '.join(WING_ORDER)} once")
    repo = Path(_git(Path.cwd(), "rev-parse", "--show-toplevel").decode().strip())
    revisions = measure(repo, args.revisions, args.repeat, order)
    for revision in revisions:
        report(revision, order)
    summary(revisions)


if __name__ == "__main__":
    main()
