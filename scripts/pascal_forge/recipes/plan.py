"""Order every rendered output by dependency and note which ones the channel already has."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..channel.local import indexed_files
from ..defaults import PLATFORM
from ..errors import RecipeError
from ..util import version_key
from .recipe import discover_recipes
from .render import RenderedOutput, render_recipe
from .variants import load_variant_config

# Variant keys that never make two builds incompatible with each other.
_IGNORED_KEYS = {"target_platform", "build_platform", "host_platform"}


@dataclass(frozen=True)
class PlannedBuild:
    """One package file to build, at its place in the build order."""

    position: int
    output: RenderedOutput
    # Positions of the planned builds this one needs in its build, host or run environment.
    needs: tuple[int, ...]
    in_channel: bool


@dataclass(frozen=True)
class Plan:
    channel: Path
    builds: tuple[PlannedBuild, ...]
    # The conda_build_config.yaml the plan was rendered from.
    variant_config: Path | None = None

    def to_json(self) -> str:
        return json.dumps([_as_record(b) for b in self.builds], indent=2)


def make_plan(
    recipes_dir: Path,
    variant_config: Path,
    channel: Path,
    *,
    overrides: Mapping[str, str | Sequence[str]] | None = None,
    target_platform: str = PLATFORM,
) -> Plan:
    """Render every recipe for every variant and put the outputs in build order."""
    config = load_variant_config(variant_config, overrides)
    rendered = {
        recipe.name: render_recipe(recipe, config, target_platform)
        for recipe in discover_recipes(recipes_dir)
    }
    ordered = _order(rendered)
    positions = {id(output): i for i, output in enumerate(ordered)}
    present = {subdir: indexed_files(channel, subdir) for subdir in {o.subdir for o in ordered}}
    builds = tuple(
        PlannedBuild(
            position=i,
            output=output,
            needs=tuple(sorted(positions[id(dep)] for dep in _dependencies(output, ordered))),
            in_channel=output.filename in present[output.subdir],
        )
        for i, output in enumerate(ordered)
    )
    return Plan(channel=channel, builds=builds, variant_config=variant_config)


def _order(rendered: dict[str, list[RenderedOutput]]) -> list[RenderedOutput]:
    """Recipes in dependency order, then each recipe's packages in dependency order.

    Ordering whole recipes first keeps the plan readable (triton, then pytorch's family,
    then vllm) while still honouring every package-level edge.
    """
    producer = {o.name: recipe for recipe, outputs in rendered.items() for o in outputs}
    recipe_needs = {
        recipe: {producer[n] for o in outputs for n in o.requirement_names if n in producer} - {recipe}
        for recipe, outputs in rendered.items()
    }
    ordered: list[RenderedOutput] = []
    for recipe in _topological(recipe_needs, what="recipes"):
        outputs = rendered[recipe]
        names = list(dict.fromkeys(o.name for o in outputs))
        name_needs = {
            name: {n for o in outputs if o.name == name for n in o.requirement_names if n in names} - {name}
            for name in names
        }
        for name in _topological(name_needs, what=f"outputs of recipe {recipe}"):
            same_name = [o for o in outputs if o.name == name]
            ordered += sorted(same_name, key=_variant_sort_key)
    return ordered


def _topological(needs: dict[str, set[str]], *, what: str) -> list[str]:
    """Kahn's algorithm; ties keep the input order so the plan is stable."""
    remaining = dict(needs)
    done: list[str] = []
    while remaining:
        ready = [name for name, deps in remaining.items() if deps <= set(done)]
        if not ready:
            cycle = ", ".join(sorted(remaining))
            raise RecipeError(f"dependency cycle among {what}: {cycle}")
        done.append(ready[0])
        del remaining[ready[0]]
    return done


def _dependencies(output: RenderedOutput, candidates: list[RenderedOutput]) -> list[RenderedOutput]:
    """Planned outputs that `output` requires and that were rendered for a matching variant."""
    return [
        other
        for other in candidates
        if other is not output
        and other.name in output.requirement_names
        and other.name != output.name
        and _compatible(output.variant, other.variant)
    ]


def _compatible(a: dict[str, str], b: dict[str, str]) -> bool:
    shared = (a.keys() & b.keys()) - _IGNORED_KEYS
    return all(a[key] == b[key] for key in shared)


def _variant_sort_key(output: RenderedOutput) -> tuple:
    """One stack after the other (oldest release first), then CUDA, then Python."""
    return (
        version_key(output.version),
        version_key(output.cuda),
        version_key(output.python),
        output.build_string,
    )


def _as_record(build: PlannedBuild) -> dict:
    output = build.output
    return {
        "order": build.position + 1,
        "recipe": output.recipe,
        "name": output.name,
        "version": output.version,
        "build": output.build_string,
        "subdir": output.subdir,
        "filename": output.filename,
        "cuda": output.cuda,
        "python": output.python,
        "variant": output.variant,
        "needs": [n + 1 for n in build.needs],
        "in_channel": build.in_channel,
    }


@dataclass(frozen=True)
class ExpensiveBuild:
    """One compile the recipes mark as expensive, and how often the plan runs it."""

    recipe: str
    name: str
    what: str
    # CUDA version -> how many times the plan runs it for that CUDA version's packages; a run
    # shared by both versions (one LLVM build for every triton) counts under each.
    per_cuda: dict[str, int]
    total: int


def expensive_builds(plan: Plan) -> list[ExpensiveBuild]:
    """How many times each expensive compile runs, from the plan.

    A recipe names its expensive compiles under `extra: expensive-builds:` (name: what). A
    staging output runs once per distinct rendering of it (its requirements, sources and
    script: what rattler-build's staging cache keys on); any other output once per package.
    """
    runs: dict[tuple[str, str], dict[str, set[str]]] = {}
    descriptions: dict[tuple[str, str], str] = {}
    for build in plan.builds:
        output = build.output
        if output.rendered is None:
            continue
        stage1 = output.rendered.recipe.to_dict()
        marked = ((stage1.get("extra") or {}).get("expensive-builds")) or {}
        keys = []
        for cache in stage1.get("staging_caches") or []:
            if cache.get("name") in marked:
                keys.append((cache["name"], json.dumps(cache, sort_keys=True)))
        if output.name in marked:
            keys.append((output.name, output.filename))
        for name, key in keys:
            descriptions[(output.recipe, name)] = str(marked[name])
            runs.setdefault((output.recipe, name), {}).setdefault(output.cuda or "-", set()).add(key)
    result = []
    for (recipe, name), by_cuda in runs.items():
        every = set().union(*by_cuda.values())
        result.append(
            ExpensiveBuild(
                recipe=recipe,
                name=name,
                what=descriptions[(recipe, name)],
                per_cuda={cuda: len(keys) for cuda, keys in sorted(by_cuda.items())},
                total=len(every),
            )
        )
    return result
