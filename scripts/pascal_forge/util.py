"""Small helpers every wing uses."""

from __future__ import annotations

from pathlib import Path

import yaml

from .defaults import where_to_run
from .errors import PascalForgeError


def read_yaml_mapping(path: Path, what: str, error: type[PascalForgeError] = PascalForgeError) -> dict:
    """A YAML file that must hold a mapping; `what` names its content in the error."""
    if not path.exists():
        raise error(f"{path}: no such file{where_to_run(path)}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise error(f"{path}: cannot read the {what}: {exc}") from exc
    if not isinstance(raw, dict):
        raise error(f"{path}: expected a mapping of {what}, got {type(raw).__name__}")
    return raw


def as_list(value: object) -> list:
    """A YAML value that may be one item, a list or absent, as a list."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def version_key(version: str | None) -> tuple[int, ...]:
    """A version's numeric parts, for sorting and comparing: "12.9" -> (12, 9); none -> ()."""
    if not version:
        return ()
    return tuple(int(part) for part in version.split(".") if part.isdigit())


def one_line(exc: BaseException) -> str:
    """An exception's message on one line, for an error that quotes it."""
    return " ".join(str(exc).split())
