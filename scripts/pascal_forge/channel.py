"""What a local conda channel directory holds, as its index says."""

from __future__ import annotations

import json
from pathlib import Path

REPODATA = "repodata.json"


def indexed_files(channel_dir: Path, subdir: str) -> set[str]:
    """File names the channel's repodata lists for `subdir` (empty if not indexed yet).

    A file on disk that the index does not list is not part of the channel: installs
    cannot see it, so it counts as not built.
    """
    repodata = channel_dir / subdir / REPODATA
    try:
        data = json.loads(repodata.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return set()
    except (OSError, json.JSONDecodeError):
        return set()
    names = set(data.get("packages") or {}) | set(data.get("packages.conda") or {})
    return {name for name in names if (channel_dir / subdir / name).is_file()}
