"""Find the recipes of a recipe folder and read them with rattler-build's parser."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml
from rattler_build import Stage0Recipe

from ..defaults import where_to_run
from ..errors import RecipeError
from ..util import one_line

RECIPE_FILE = "recipe.yaml"
PATCH_DIR = "patches"
# What `pascal-forge bump` writes where it cannot know a value (a source it cannot fetch
# from here). Any recipe that still holds it is refused, so nothing is built on a guess.
PLACEHOLDER = "PASCAL-FORGE-FILL-IN"


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
        """Every patch file of every version (patches/<version>/NNNN-what.patch).

        GNU patch takes either suffix, and so do recipes: an unlisted .diff is as forgotten as
        a .patch.
        """
        folder = self.directory / PATCH_DIR
        return sorted([*folder.glob("**/*.patch"), *folder.glob("**/*.diff")])

    def patch_dir(self, version: str) -> Path:
        """Where the series of one upstream version lives."""
        return self.directory / PATCH_DIR / version

    def document(self) -> dict:
        """recipe.yaml as written (PyYAML, not a render): what pascal-forge reads without
        rattler-build, such as its `extra:`, its context and its outputs' names."""
        return yaml.safe_load(self.path.read_text(encoding="utf-8")) or {}

    def patch_series(self, version: str) -> list[Path]:
        """The patches of `version` in the order its `if: version == "X"` source block lists them.

        Read from the recipe text, not a render, so a version the variant matrix does not
        select yet (one `bump` just added) has its series too.
        """
        listed = _version_patches(self.document(), f'version == "{version}"')
        return [self.directory / p for p in dict.fromkeys(listed)]

    @property
    def package_names(self) -> tuple[str, ...]:
        """The packages this recipe builds: its package outputs' names (a staging output is
        none), or its one package's."""
        data = self.document()
        outputs = [output for output in data.get("outputs") or [data] if "package" in output]
        names = tuple(str(output["package"].get("name", "")) for output in outputs)
        unreadable = [name for name in names if not name or "${{" in name]
        if unreadable:
            raise RecipeError(
                f"{self.path}: an output's package name is {unreadable[0]!r}; write each output's "
                "name literally (pascal-forge reads them without rendering)"
            )
        return names


def shipped_names(recipes_dir: Path) -> frozenset[str]:
    """Every package name the recipes of `recipes_dir` build: the family that must come whole
    from our channel (a stock member beside ours mixes ABIs)."""
    return frozenset(name for recipe in discover_recipes(recipes_dir) for name in recipe.package_names)


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


def parse_recipe(recipe: Recipe) -> Stage0Recipe:
    """Parse a recipe with rattler-build; a YAML or schema error names the file."""
    check_placeholders(recipe)
    try:
        return Stage0Recipe.from_file(recipe.path)
    except Exception as exc:  # rattler-build raises several unrelated error types
        raise RecipeError(f"{recipe.path}: cannot be parsed: {one_line(exc)}") from exc


def check_placeholders(recipe: Recipe) -> None:
    """Refuse a recipe in which `bump` left a value for a person to fill in, naming each."""
    unfilled = [
        f"line {number}: {line.strip().split(':', 1)[0].lstrip('- ')}"
        for number, line in enumerate(recipe.path.read_text(encoding="utf-8").splitlines(), start=1)
        if PLACEHOLDER in line and not line.lstrip().startswith("#")
    ]
    if unfilled:
        raise RecipeError(
            f"{recipe.path}: values to fill in before anything is built ({'; '.join(unfilled)}); "
            f"replace each {PLACEHOLDER} value with the real one"
        )


def check_patch_list(recipe: Recipe, listed: set[str], versions: set[str]) -> None:
    """A listed patch must exist, and every patch file of a rendered version must be listed.

    `listed` holds the patch paths, relative to the recipe folder, that any rendered
    variant names, so a patch applied under a selector still counts as listed. Series of
    versions that a narrowed matrix does not render (patches/<version>/) are not judged.
    """
    missing = sorted(p for p in listed if not (recipe.directory / p).is_file())
    if missing:
        raise RecipeError(f"{recipe.path}: lists patches that do not exist: {', '.join(missing)}")
    patch_root = recipe.directory / PATCH_DIR
    unlisted = sorted(
        str(p.relative_to(recipe.directory))
        for p in recipe.patch_files
        if str(p.relative_to(recipe.directory)) not in listed
        and (p.parent == patch_root or p.parent.name in versions)
    )
    if unlisted:
        raise RecipeError(
            f"{recipe.path}: patch files that no source lists (add them or delete them): "
            f"{', '.join(unlisted)}"
        )


def _version_patches(node: object, condition: str) -> list[str]:
    """Patch paths of every `if: <condition>` block anywhere in the recipe (outputs too)."""
    if isinstance(node, list):
        return [p for item in node for p in _version_patches(item, condition)]
    if not isinstance(node, dict):
        return []
    if str(node.get("if", "")).replace("'", '"').strip() == condition:
        sources = node.get("then") or []
        sources = [sources] if isinstance(sources, dict) else sources
        return [str(p) for s in sources if isinstance(s, dict) for p in s.get("patches") or []]
    return [p for value in node.values() for p in _version_patches(value, condition)]
