"""Where a channel name such as `pascal` leads, as conda (and mamba) would resolve it.

`conda install -c pascal vllm` resolves the bare name against `custom_multichannels`,
`custom_channels` and `channel_alias` of the .condarc files conda reads, and without them
against conda's public default host, where the name `pascal` belongs to somebody else. conda
is usually not installed where pascal-forge runs, so the files are read here, in conda's
order, and rattler (which implements conda's channel rules) supplies the public default.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from rattler import Channel, ChannelConfig

from ..errors import PascalForgeError
from ..util import as_list, read_yaml_mapping

DEFAULT_NAME = "pascal"
_RC_NAMES = (".condarc", "condarc")


class CondaConfigError(PascalForgeError):
    """A .condarc file cannot be read, or a channel URL cannot be turned into configuration."""


@dataclass(frozen=True)
class ChannelResolution:
    """Where one channel name leads, and which setting of which file says so."""

    name: str
    urls: tuple[str, ...]
    # "custom_multichannels", "custom_channels", "channel_alias" or "default".
    setting: str
    source: Path | None
    files_read: tuple[Path, ...] = field(default=())

    @property
    def public_default(self) -> bool:
        """True when the name leads where conda's built-in default would send it."""
        return self.urls == (_default_url(self.name),)

    def describe(self) -> str:
        where = ", ".join(self.urls)
        if self.setting == "default":
            read = ", ".join(str(p) for p in self.files_read) or "no .condarc file"
            return (
                f"channel {self.name!r} is not configured (read: {read}); conda resolves it against its "
                f"default channel_alias to {where}, a public channel that somebody else owns"
            )
        return f"channel {self.name!r} points at {where} ({self.setting} in {self.source})"


def condarc_files(environ: Mapping[str, str] | None = None, home: Path | None = None) -> list[Path]:
    """The configuration files conda reads, lowest precedence first, that exist."""
    env = os.environ if environ is None else environ
    home = home or Path.home()
    places: list[Path] = [Path("/etc/conda"), Path("/var/lib/conda")]
    if env.get("CONDA_ROOT"):
        places.append(Path(env["CONDA_ROOT"]))
    places.append(
        Path(env["XDG_CONFIG_HOME"]) / "conda" if env.get("XDG_CONFIG_HOME") else home / ".config/conda"
    )
    places += [home / ".conda", home]
    if env.get("CONDA_PREFIX"):
        places.append(Path(env["CONDA_PREFIX"]))
    found: list[Path] = []
    for place in places:
        found += [place / name for name in _RC_NAMES]
        found += sorted((place / "condarc.d").glob("*.yml")) + sorted((place / "condarc.d").glob("*.yaml"))
    if env.get("CONDARC"):
        found.append(Path(env["CONDARC"]))
    return [path for path in dict.fromkeys(found) if path.is_file()]


def resolve_channel(
    name: str = DEFAULT_NAME, environ: Mapping[str, str] | None = None, home: Path | None = None
) -> ChannelResolution:
    """Where `conda install -c <name>` would look, after every .condarc conda reads."""
    files = condarc_files(environ, home)
    multichannels: dict[str, tuple[list[str], Path]] = {}
    custom: dict[str, tuple[str, Path]] = {}
    alias: tuple[str, Path] | None = None
    for path in files:
        config = read_yaml_mapping(path, "conda settings", CondaConfigError)
        for key, value in (config.get("custom_multichannels") or {}).items():
            multichannels[str(key)] = ([str(v) for v in as_list(value)], path)
        for key, value in (config.get("custom_channels") or {}).items():
            custom[str(key)] = (str(value), path)
        if config.get("channel_alias"):
            alias = (str(config["channel_alias"]), path)
    read = tuple(files)
    if name in multichannels:
        urls, path = multichannels[name]
        return ChannelResolution(
            name, tuple(_url(u, alias) for u in urls), "custom_multichannels", path, read
        )
    if name in custom:
        base, path = custom[name]
        return ChannelResolution(name, (f"{base.rstrip('/')}/{name}",), "custom_channels", path, read)
    if alias:
        return ChannelResolution(name, (_url(name, alias),), "channel_alias", alias[1], read)
    return ChannelResolution(name, (_default_url(name),), "default", None, read)


@dataclass(frozen=True)
class ChannelSnippets:
    """Configuration that makes `-c <name>` (and pixi) use one channel URL."""

    name: str
    url: str
    condarc: str
    pixi_toml: str
    pixi_config: str

    def install_command(self, channel: str) -> str:
        return f"conda install --strict-channel-priority -c {channel} -c conda-forge vllm-pascal"

    def text(self) -> str:
        """Everything `pascal-forge channel-config` prints, as comments and pasteable blocks."""
        return "\n".join(
            [
                "# conda and mamba: add to ~/.condarc (for one environment: $CONDA_PREFIX/.condarc)",
                self.condarc,
                "# then install with",
                self.install_command(self.name),
                "",
                "# or, with no configuration at all, name the URL itself",
                self.install_command(self.url),
                "",
                "# pixi: in the workspace's pixi.toml, then `pixi add vllm-pascal`",
                self.pixi_toml,
                f"# pixi: or, for `{self.name}` to mean this URL in every workspace, in ~/.pixi/config.toml",
                self.pixi_config,
                "# check where conda will look: pascal-forge doctor",
            ]
        )


def channel_snippets(url: str, name: str = DEFAULT_NAME) -> ChannelSnippets:
    """The .condarc, pixi.toml and pixi config.toml text for a channel served at `url`."""
    url = _check_url(url)
    base, _, last = url.rpartition("/")
    if last == name and "://" in base and base.split("://", 1)[1]:
        condarc = f"custom_channels:\n  {name}: {base}\n"
    else:
        # custom_channels can only append the name to a base URL; a multichannel takes any URL.
        condarc = f"custom_multichannels:\n  {name}:\n    - {url}\n"
    pixi_toml = f'[workspace]\nchannels = ["{url}", "conda-forge"]\n'
    # pixi resolves a bare name against the default host; a mirror entry redirects that URL.
    pixi_config = f'[mirrors]\n"{_default_url(name)}" = ["{url}"]\n'
    return ChannelSnippets(name, url, condarc, pixi_toml, pixi_config)


def _check_url(url: str) -> str:
    url = url.strip().rstrip("/")
    if url.startswith("/"):
        url = Path(url).as_uri()
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme not in ("https", "http", "file", "s3"):
        raise CondaConfigError(
            f"{url}: give the channel's full URL (https://host/path, file:///srv/channel or an absolute "
            "path), the address conda downloads from"
        )
    return url


def _url(channel: str, alias: tuple[str, Path] | None) -> str:
    if "://" in channel:
        return channel.rstrip("/")
    config = ChannelConfig(channel_alias=alias[0].rstrip("/") + "/") if alias else ChannelConfig()
    return Channel(channel, config).base_url.rstrip("/")


def _default_url(name: str) -> str:
    return Channel(name, ChannelConfig()).base_url.rstrip("/")


def is_channel_name(channel: str) -> bool:
    """A bare name like `pascal`, which conda resolves through its configuration, not a URL or path."""
    return "://" not in channel and "/" not in channel and not Path(channel).exists()
