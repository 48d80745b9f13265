"""Helpers for the `pascal-forge build` tests: the fixture chain, an offline stand-in for
conda-forge, the CLI, and installing from the built channel with py-rattler."""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rattler import Channel, Gateway, install, solve

from pascal_forge.channel.local import index_channel
from pascal_forge.cli import main

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "chain"
FIXTURE_RECIPES = FIXTURES / "recipes"
FIXTURE_FAILING = FIXTURES / "failing"
FIXTURE_VARIANTS = FIXTURES / "conda_build_config.yaml"
SUBDIR = "linux-64"


def fixture_recipes(tmp_path: Path, *, failing: bool = False) -> Path:
    """A private copy of the fixture recipes (tests may edit it), optionally with the failing one."""
    recipes = tmp_path / "recipes"
    shutil.copytree(FIXTURE_RECIPES, recipes)
    if failing:
        for recipe in FIXTURE_FAILING.iterdir():
            shutil.copytree(recipe, recipes / recipe.name)
    return recipes


def offline_mirror(tmp_path: Path) -> Path:
    """An empty indexed channel in place of conda-forge, so no build ever reaches the network."""
    mirror = tmp_path / "mirror"
    index_channel(mirror, [SUBDIR])
    return mirror


def build_argv(recipes: Path, channel: Path, mirror: Path, *extra: str) -> list[str]:
    return [
        "build",
        "--recipes",
        str(recipes),
        "--variant-config",
        str(FIXTURE_VARIANTS),
        "--channel",
        str(channel),
        "--source-channel",
        mirror.as_uri(),
        *extra,
    ]


def run_build(capsys, *argv: str) -> tuple[int, str]:
    """`pascal-forge <argv>` in this process; returns the exit code and what it printed."""
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def listed(channel: Path, subdir: str = SUBDIR) -> dict[str, dict]:
    """The package records the channel's repodata.json lists for `subdir`."""
    data = json.loads((channel / subdir / "repodata.json").read_text(encoding="utf-8"))
    return {**(data.get("packages") or {}), **(data.get("packages.conda") or {})}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def install_from(channel: Path | list[Path], specs: list[str], prefix: Path, cache: Path) -> dict[str, str]:
    """Solve `specs` against the channel (or channels, in priority order) and install them
    into a fresh `prefix`.

    Returns name -> build string of what was installed.
    """
    gateway = Gateway(cache_dir=cache / "repodata")
    channels = [Channel(c.resolve().as_uri()) for c in (channel if isinstance(channel, list) else [channel])]

    async def solve_and_install() -> list:
        records = await solve(channels, specs, gateway=gateway, platforms=[SUBDIR, "noarch"])
        await install(records, target_prefix=prefix, cache_dir=cache / "pkgs", show_progress=False)
        return records

    records = asyncio.run(solve_and_install())
    return {str(r.name.normalized): str(r.build) for r in records}


def run_in(prefix: Path, command: str) -> str:
    """Run an installed program of `prefix` and return its output."""
    result = subprocess.run(
        [str(prefix / "bin" / command)], capture_output=True, text=True, timeout=60, check=True
    )
    return result.stdout


@contextmanager
def serving(directory: Path) -> Iterator[str]:
    """A real HTTP server for `directory` on 127.0.0.1, in its own process.

    Not a thread of the test process: rattler-build holds the GIL while it downloads, so a
    server thread here could never answer it.
    """
    server = subprocess.Popen(
        [sys.executable, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1", "-d", str(directory)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        banner = server.stdout.readline()  # "Serving HTTP on 127.0.0.1 port 41234 (http://...) ..."
        port = int(banner.split(" port ")[1].split()[0])
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=10)
