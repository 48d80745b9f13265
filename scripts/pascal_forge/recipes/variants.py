"""The variant matrix: load conda_build_config.yaml and refuse what cannot serve Pascal."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml
from packaging.version import InvalidVersion, Version
from rattler_build import VariantConfig

from ..defaults import PLATFORM
from ..errors import VariantError
from ..pascal import FIRST_CUDA_WITHOUT_PASCAL, PASCAL_ARCHES
from ..util import as_list, read_yaml_mapping

ARCH_KEY = "cuda_arch_list"
CUDA_KEY = "cuda_compiler_version"
# Keys of conda_build_config.yaml that shape the matrix but are not variant values.
_NOT_VARIANT_KEYS = ("zip_keys", "pin_run_as_build", "extend_keys")


@dataclass(frozen=True)
class Stack:
    """One stack: the releases that install together, one column of the zipped version keys."""

    vllm: str
    pytorch: str
    triton: str
    torchvision: str
    torchaudio: str


# Stack field -> its key in conda_build_config.yaml (zipped with python: one column per Python).
STACK_KEYS = {
    "vllm": "vllm_version",
    "pytorch": "pytorch_version",
    "triton": "triton_version",
    "torchvision": "torchvision_version",
    "torchaudio": "torchaudio_version",
}


def read_variant_config(path: Path) -> dict:
    """The keys of a conda_build_config.yaml as written, unchecked."""
    return read_yaml_mapping(path, "variant configuration", VariantError)


def arch_list(path: Path) -> str:
    """The one TORCH_CUDA_ARCH_LIST the recipes build for (`cuda_arch_list`), e.g. "6.0;6.1"."""
    raw = read_variant_config(path)
    check_pascal(raw, source=path)
    lists = [str(value) for value in as_list(raw.get(ARCH_KEY))]
    if len(lists) != 1:
        raise VariantError(
            f"{path}: {ARCH_KEY} has {len(lists)} values ({', '.join(lists)}); the checks build for one"
        )
    return lists[0]


def stacks(path: Path) -> list[Stack]:
    """The stacks the config zips together, oldest (the seed) first and newest (the current) last.

    Each column of the STACK_KEYS lists is one Python of one stack; a stack is named by its vLLM,
    so one vLLM in two stacks is refused, as are columns of unequal length.
    """
    raw = read_variant_config(path)
    columns = {field: [str(v) for v in as_list(raw.get(key))] for field, key in STACK_KEYS.items()}
    missing = [STACK_KEYS[field] for field, values in columns.items() if not values]
    if missing:
        raise VariantError(f"{path}: no {', '.join(missing)}: each stack is one column of them")
    lengths = {STACK_KEYS[field]: len(values) for field, values in columns.items()}
    if len(set(lengths.values())) != 1:
        counts = ", ".join(f"{key} {count}" for key, count in lengths.items())
        raise VariantError(f"{path}: the stack columns are zipped, so must be equally long: {counts}")
    found = list(dict.fromkeys(Stack(*row) for row in zip(*columns.values(), strict=True)))
    for vllm in dict.fromkeys(stack.vllm for stack in found):
        paired = [stack for stack in found if stack.vllm == vllm]
        if len(paired) > 1:
            raise VariantError(
                f"{path}: vllm_version {vllm} is in {len(paired)} stacks ({'; '.join(map(str, paired))}): "
                "its columns must name the same releases"
            )
    try:
        return sorted(found, key=lambda stack: Version(stack.vllm))
    except InvalidVersion as exc:
        raise VariantError(f"{path}: vllm_version: {exc}") from exc


def load_variant_config(
    path: Path, overrides: Mapping[str, str | Sequence[str]] | None = None
) -> VariantConfig:
    """Read a conda_build_config.yaml, narrow it to `overrides`, and check it serves Pascal."""
    raw = read_variant_config(path)
    if overrides:
        raw = select_variant(raw, overrides, source=path)
    check_pascal(raw, source=path)
    try:
        return VariantConfig.from_yaml(yaml.safe_dump(raw, sort_keys=False))
    except Exception as exc:  # rattler-build raises its own error types
        raise VariantError(f"{path}: rattler-build rejects the variant configuration: {exc}") from exc


def check_pascal(raw: dict, *, source: Path | str = "conda_build_config.yaml") -> None:
    """Raise VariantError naming the key and value of any variant that cannot serve Pascal."""
    if not as_list(raw.get(CUDA_KEY)):
        raise VariantError(f'{source}: {CUDA_KEY} is missing: set it to a CUDA 12.x version, e.g. "12.9".')
    for version in as_list(raw.get(CUDA_KEY)):
        text = str(version)
        if text == "None":
            raise VariantError(
                f"{source}: {CUDA_KEY}: {text!r} builds without CUDA; pascal-forge only builds CUDA 12.x."
            )
        try:
            major = int(text.split(".")[0])
        except ValueError as exc:
            raise VariantError(f"{source}: {CUDA_KEY}: {text!r} is not a CUDA version") from exc
        if major >= FIRST_CUDA_WITHOUT_PASCAL:
            raise VariantError(
                f"{source}: {CUDA_KEY}: {text!r} cannot target Pascal (CUDA 13 dropped sm_60/sm_61); "
                "use a CUDA 12.x version such as 12.9."
            )
    arch_lists = as_list(raw.get(ARCH_KEY))
    if not arch_lists:
        raise VariantError(f'{source}: {ARCH_KEY} is missing: set it to e.g. "6.0;6.1".')
    for arch_list in arch_lists:
        arches = [a.strip() for a in str(arch_list).split(";") if a.strip()]
        if not arches:
            raise VariantError(f'{source}: {ARCH_KEY}: {arch_list!r} is empty: set it to e.g. "6.0;6.1".')
        for arch in arches:
            if arch.removesuffix("+PTX") not in PASCAL_ARCHES:
                raise VariantError(
                    f"{source}: {ARCH_KEY}: {arch!r} in {arch_list!r} is not a Pascal architecture "
                    f"(allowed: {', '.join(PASCAL_ARCHES)})."
                )


def select_variant(raw: dict, overrides: Mapping[str, str | Sequence[str]], *, source: Path | str) -> dict:
    """Keep only the variants where each overridden key has one of the given values.

    Keys zipped together are narrowed together, so `cuda_compiler_version=12.9` also keeps
    the matching compiler and sysroot versions. Several values of one key keep all of them;
    several keys keep the variants that match each.
    """
    narrowed = dict(raw)
    zip_groups: list[list[str]] = raw.get("zip_keys") or []
    for key, wanted in overrides.items():
        wanted_values = [wanted] if isinstance(wanted, str) else list(wanted)
        values = [str(v) for v in as_list(narrowed.get(key))]
        if key not in raw:
            raise VariantError(_unknown_key_message(raw, key, source))
        missing = [w for w in wanted_values if not any(_matches(w, v) for v in values)]
        if missing:
            raise VariantError(
                f"{source}: {key} has no value {', '.join(map(repr, missing))} (it has: {', '.join(values)})."
            )
        keep = [i for i, value in enumerate(values) if any(_matches(w, value) for w in wanted_values)]
        group = next((g for g in zip_groups if key in g), [key])
        for member in group:
            member_values = as_list(narrowed.get(member))
            narrowed[member] = [member_values[i] for i in keep]
    return narrowed


def variant_keys(raw: dict) -> list[str]:
    """The keys of a variant matrix that a --variant KEY=VALUE can narrow."""
    return [key for key in raw if key not in _NOT_VARIANT_KEYS]


def _unknown_key_message(raw: dict, key: str, source: Path | str) -> str:
    if key == "target_platform":
        return f"--variant target_platform: the recipes build for {PLATFORM} only; drop the option."
    return f"{source}: no variant key {key!r}; the matrix has: {', '.join(variant_keys(raw))}."


def _matches(wanted: str, value: str) -> bool:
    # "3.12" selects the python entry "3.12.* *_cpython".
    return wanted in (value, value.split(" ")[0].removesuffix(".*"))
