"""Render recipes for every variant with rattler-build's engine (no renderer of our own)."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rattler_build import PlatformConfig, RenderConfig, RenderedVariant, Stage0Recipe, VariantConfig

from ..defaults import PLATFORM
from ..errors import RecipeError
from ..util import one_line
from .recipe import Recipe, check_patch_list, parse_recipe

# The variant keys a reader needs to tell two builds of one package apart.
SUMMARY_KEYS = ("cuda_compiler_version", "python", "cuda_arch_list")


@dataclass(frozen=True)
class RenderedOutput:
    """One package file that one recipe produces for one variant."""

    recipe: str
    name: str
    version: str
    build_string: str
    subdir: str
    variant: dict[str, str] = field(compare=False, hash=False)
    # Names of the packages this output needs at build, host or run time.
    requirement_names: frozenset[str] = field(compare=False, hash=False)
    # Patch paths relative to the recipe folder, in the order they are applied.
    patches: tuple[str, ...] = field(default=(), compare=False, hash=False)
    # rattler-build's own handle, kept so that a build runs exactly what was planned.
    rendered: RenderedVariant | None = field(default=None, compare=False, hash=False, repr=False)
    recipe_file: Path | None = field(default=None, compare=False, hash=False)
    # The staging output this package inherits (its C++ or LLVM build), if any.
    inherits: str | None = field(default=None, compare=False, hash=False)

    @property
    def filename(self) -> str:
        return f"{self.name}-{self.version}-{self.build_string}.conda"

    @property
    def cuda(self) -> str | None:
        return self.variant.get("cuda_compiler_version")

    @property
    def python(self) -> str | None:
        value = self.variant.get("python")
        return value.split(" ")[0].removesuffix(".*") if value else None


def render_recipe(
    recipe: Recipe, variant_config: VariantConfig, target_platform: str = PLATFORM
) -> list[RenderedOutput]:
    """All outputs of `recipe` for every variant, once each, in rattler-build's order."""
    stage0 = parse_recipe(recipe)
    config = RenderConfig(platform=PlatformConfig(target_platform=target_platform))
    try:
        variants = stage0.render(variant_config, config)
    except Exception as exc:  # Jinja and selector errors come back as rattler-build errors
        raise RecipeError(f"{recipe.path}: cannot be rendered: {one_line(exc)}") from exc

    raw = recipe.document()
    skipped = {
        name: _skipped_variants(recipe, raw.get("context") or {}, conditions, variant_config, config)
        for name, conditions in _skip_conditions(raw).items()
        if conditions
    }
    outputs: dict[tuple[str, str], RenderedOutput] = {}
    listed_patches: set[str] = set()
    for variant in variants:
        stage1 = variant.recipe
        values = {k: str(v) for k, v in variant.variant.items()}
        if any(skip.items() <= values.items() for skip in skipped.get(stage1.package.name, ())):
            continue
        data = stage1.to_dict()
        patches = _patches(data)
        listed_patches.update(patches)
        output = RenderedOutput(
            recipe=recipe.name,
            name=stage1.package.name,
            version=str(stage1.package.version),
            build_string=str(stage1.build.string),
            subdir="noarch" if data.get("build", {}).get("noarch") else target_platform,
            variant={k: str(v) for k, v in variant.variant.items()},
            requirement_names=frozenset(_requirement_names(data)),
            patches=patches,
            rendered=variant,
            recipe_file=recipe.path,
            inherits=_inherited_staging(data),
        )
        outputs.setdefault((output.name, output.build_string), output)
    check_patch_list(recipe, listed_patches, {o.version for o in outputs.values()})
    return list(outputs.values())


def _skip_conditions(raw: dict[str, Any]) -> dict[str, tuple[str, ...]]:
    """Each output's `build: skip:` conditions, the recipe-level ones included, by package name.

    py-rattler-build's render and run_build ignore `skip` (the rattler-build CLI honours it),
    so a skipped variant would be planned and built; pascal-forge drops it itself.
    """
    shared = _conditions(raw.get("build"))
    outputs = raw.get("outputs") or [raw]
    return {
        str((output.get("package") or {}).get("name")): shared + _conditions(output.get("build"))
        for output in outputs
    }


def _conditions(build: Any) -> tuple[str, ...]:
    skip = (build or {}).get("skip") if isinstance(build, dict) else None
    if skip is None:
        return ()
    return tuple(str(c) for c in (skip if isinstance(skip, list) else [skip]))


def _skipped_variants(
    recipe: Recipe,
    context: dict[str, Any],
    conditions: tuple[str, ...],
    variant_config: VariantConfig,
    config: RenderConfig,
) -> list[dict[str, str]]:
    """The variants (by the keys the conditions use) for which a condition holds, evaluated by
    rattler-build's own Jinja: a probe recipe with the recipe's context carries the verdict in
    its build string, rendered once over the whole variant configuration."""
    verdict = " or ".join(f"({c})" for c in conditions)
    probe = {
        "context": context,
        "package": {"name": "skip-probe", "version": "0"},
        "build": {"string": "${{ 'skip' if " + verdict + " else 'keep' }}"},
    }
    try:
        # from_dict writes the recipe it is given into recipe_dir: a scratch folder, never the
        # recipe's own.
        with tempfile.TemporaryDirectory(prefix="pascal-forge-skip-") as scratch:
            rendered = Stage0Recipe.from_dict(probe, recipe_dir=scratch).render(variant_config, config)
    except Exception as exc:
        raise RecipeError(
            f"{recipe.path}: `skip:` conditions {list(conditions)} cannot be evaluated: {one_line(exc)}"
        ) from exc
    return [
        {k: str(v) for k, v in probe_variant.variant.items()}
        for probe_variant in rendered
        if str(probe_variant.recipe.build.string) == "skip"
    ]


def _inherited_staging(stage1: dict[str, Any]) -> str | None:
    inherits = stage1.get("inherits_from") or {}
    return str(inherits["cache_name"]) if inherits.get("cache_name") else None


def _patches(stage1: dict[str, Any]) -> tuple[str, ...]:
    sources = list(stage1.get("source") or [])
    for cache in stage1.get("staging_caches") or []:
        sources += cache.get("source") or []
    return tuple(dict.fromkeys(str(p) for source in sources for p in source.get("patches") or []))


def _requirement_names(stage1: dict[str, Any]) -> set[str]:
    sections = [stage1.get("requirements") or {}]
    sections += [cache.get("requirements") or {} for cache in stage1.get("staging_caches") or []]
    names: set[str] = set()
    for section in sections:
        for kind in ("build", "host", "run"):
            for spec in section.get(kind) or []:
                name = _spec_name(spec)
                if name:
                    names.add(name)
    return names


def _spec_name(spec: Any) -> str | None:
    if isinstance(spec, str):
        return spec.split()[0] if spec.strip() else None
    if isinstance(spec, dict):
        for pin in ("pin_subpackage", "pin_compatible"):
            if pin in spec:
                return spec[pin]["name"]
    return None
