"""Broken inputs to `plan` named in one line: variant configurations and recipe patch folders."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from support.repo import RECIPES, VARIANT_CONFIG

from pascal_forge.cli import main
from pascal_forge.errors import RecipeError, VariantError
from pascal_forge.recipes.recipe import Recipe, check_patch_list
from pascal_forge.recipes.variants import CUDA_KEY, load_variant_config


@pytest.mark.parametrize(
    "content",
    [b"- cuda_compiler_version\n- '12.9'\n", "cuda_arch_list: ['6.1']  # \u00e9\n".encode("latin-1")],
    ids=["a-list", "not-utf-8"],
)
def test_a_variant_configuration_that_is_not_a_utf8_mapping_is_named(
    tmp_path: Path, content: bytes, capsys: pytest.CaptureFixture
) -> None:
    path = tmp_path / "conda_build_config.yaml"
    path.write_bytes(content)
    with pytest.raises(VariantError, match="conda_build_config.yaml"):
        load_variant_config(path)
    command = ["plan", "--recipes", str(RECIPES), "--variant-config", str(path), "--channel", str(tmp_path)]
    assert main(command) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_a_missing_cuda_compiler_version_is_named(tmp_path: Path) -> None:
    raw = yaml.safe_load(VARIANT_CONFIG.read_text())
    del raw[CUDA_KEY]
    raw["zip_keys"] = [[k for k in group if k != CUDA_KEY] for group in raw.get("zip_keys") or []]
    path = tmp_path / "conda_build_config.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(VariantError, match=f"{CUDA_KEY} is missing"):
        load_variant_config(path)


@pytest.mark.parametrize("suffix", [".patch", ".diff"])
def test_an_unlisted_patch_file_is_named_whatever_its_suffix(tmp_path: Path, suffix: str) -> None:
    recipe = Recipe(name="demo", directory=tmp_path)
    (tmp_path / "recipe.yaml").write_text("package: {name: demo, version: '1'}\n")
    (tmp_path / "patches").mkdir()
    (tmp_path / "patches" / f"0001-listed{suffix}").write_text("")
    (tmp_path / "patches" / f"0002-forgotten{suffix}").write_text("")
    check_patch_list(recipe, {f"patches/0001-listed{suffix}", f"patches/0002-forgotten{suffix}"}, set())
    with pytest.raises(RecipeError, match=f"patches/0002-forgotten{suffix}"):
        check_patch_list(recipe, {f"patches/0001-listed{suffix}"}, set())
