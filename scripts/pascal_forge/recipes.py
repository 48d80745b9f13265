"""Find the recipes of a recipe folder and read them with rattler-build's parser."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rattler_build import Stage0Recipe

from .errors import RecipeError

RECIPE_FILE = "recipe.yaml"
RECIPES_DIR = "recipes"
PATCH_DIR = "patches"


@dataclass(frozen=True)
class Recipe:
    """One recipe folder: recipes/<name>/recipe.yaml with its build script and patches."""

    name: str
    directory: Path

    @property
    def path(self) -> Path:
        return self.directory / RECIPE_FILE

    @property
    def patch_files(self) -> list[Path]:
        return sorted((self.directory / PATCH_DIR).glob("*.patch"))


def discover_recipes(recipes_dir: Path) -> list[Recipe]:
    """Every folder of `recipes_dir` that holds a recipe.yaml, by name."""
    if not recipes_dir.is_dir():
        raise RecipeError(f"{recipes_dir}: no such recipe folder{where_to_run(recipes_dir)}")
    recipes = [
        Recipe(name=child.name, directory=child)
        for child in sorted(recipes_dir.iterdir())
        if (child / RECIPE_FILE).is_file()
    ]
    if not recipes:
        raise RecipeError(f"{recipes_dir}: holds no <name>/{RECIPE_FILE}")
    return recipes


def where_to_run(missing: Path) -> str:
    """The fix for a default input that is missing because the command runs in another folder."""
    if missing.is_absolute() or missing.exists():
        return ""
    return (
        f" in {Path.cwd()}; run pascal-forge in the repository's root folder (the one holding "
        f"{RECIPES_DIR}/, conda_build_config.yaml and conda-forge.yml), or pass --recipes and "
        "--variant-config (--root for rerender)"
    )


def parse_recipe(recipe: Recipe) -> Stage0Recipe:
    """Parse a recipe with rattler-build; a YAML or schema error names the file."""
    try:
        return Stage0Recipe.from_file(recipe.path)
    except Exception as exc:  # rattler-build raises several unrelated error types
        raise RecipeError(f"{recipe.path}: cannot be parsed: {_one_line(exc)}") from exc


def check_patch_list(recipe: Recipe, listed: set[str]) -> None:
    """A listed patch must exist, and every patch file must be listed.

    `listed` holds the patch paths, relative to the recipe folder, that any rendered
    variant names, so a patch applied under a selector still counts as listed.
    """
    missing = sorted(p for p in listed if not (recipe.directory / p).is_file())
    if missing:
        raise RecipeError(f"{recipe.path}: lists patches that do not exist: {', '.join(missing)}")
    unlisted = sorted(
        str(p.relative_to(recipe.directory))
        for p in recipe.patch_files
        if str(p.relative_to(recipe.directory)) not in listed
    )
    if unlisted:
        raise RecipeError(
            f"{recipe.path}: patch files that no source lists (add them or delete them): "
            f"{', '.join(unlisted)}"
        )


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
