"""Can the channels be read? Each source channel's repodata is fetched on its own, so that an
error names its channel, in one line, with the credentials a URL may hold scrubbed."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rattler import Channel, Gateway
from rattler.exceptions import GatewayError

from ..channel.solve import _source
from ..defaults import PLATFORM
from ..rattler_run import run_rattler

DEFAULT_TIMEOUT = 20.0
# rattler-build's messages when the repodata of a channel could not be fetched or a solve failed.
_CHANNEL_ERROR_MARKS = (
    "failed to resolve dependencies",
    "error sending request",
    "could not find subdir",
    "repodata",
    "http status",
    "dns error",
    "connection refused",
)


@dataclass(frozen=True)
class UnreachableChannel:
    # The channel as the line names it: "source channel URL", "the target channel PATH".
    channel: str
    reason: str

    @property
    def line(self) -> str:
        return (
            f"{self.channel} is unreachable: {self.reason}. Nothing was solved or built; "
            "check the URL, the network or proxy (or pass --source-channel with a mirror), or pass "
            "--no-preflight to skip this check."
        )


async def fetch_channels(
    gateway: Gateway,
    sources: list[str],
    labels: list[str],
    names: list[str],
    platforms: list[str],
    timeout: float,
) -> list[UnreachableChannel]:
    """Fetch every channel's repodata for `names` (and what they need), one query per channel,
    all at once, so that an error names its channel; what is fetched stays in the gateway's
    memory for the solves that follow. Returns the channels that could not be read."""

    async def fetch(source: str) -> str | None:
        try:
            await asyncio.wait_for(
                gateway.query([source], platforms, names or ["python"], recursive=True), timeout
            )
        except TimeoutError:
            return f"no answer within {timeout:g} s"
        except GatewayError as exc:
            return gateway_reason(str(exc))
        return None

    reasons = await asyncio.gather(*(fetch(s) for s in sources))
    return [
        UnreachableChannel(label, reason)
        for label, reason in zip(labels, reasons, strict=True)
        if reason is not None
    ]


def gateway_reason(text: str) -> str:
    """The last cause of a rattler fetch error, in one line with credentials removed."""
    causes = [line.removeprefix("Caused by:").strip() for line in text.strip().splitlines() if line.strip()]
    reason = causes[-1] if causes else "unknown error"
    reason = re.sub(r"\s*for url \((\S+)\)", lambda m: f" for {m.group(1)}", reason)
    if "lookup address" in reason or "dns error" in text:
        reason = f"DNS lookup failed ({reason})"
    return scrub(reason)


def channel_label(channel: str) -> str:
    """A channel as the user gave it, with the URL a bare name stands for."""
    source = _source(channel)
    if Path(source).is_absolute() or "://" in source:
        return scrub(channel)
    try:
        url = Channel(source).base_url
    except Exception:  # rattler refuses names it cannot turn into a URL; show the name alone
        return scrub(channel)
    return f"{scrub(channel)} ({scrub(url)})"


def scrub(text: str) -> str:
    """`text` without the credentials a channel URL may hold (user:password@, /t/<token>/)."""
    text = re.sub(r"(\w+://)[^/@\s]+@", r"\1***@", text)
    return re.sub(r"/t/[^/\s]+", "/t/***", text)


def is_channel_error(message: str) -> bool:
    lowered = message.lower()
    return any(mark in lowered for mark in _CHANNEL_ERROR_MARKS)


def unreachable_channels(
    channels: Sequence[str], *, timeout: float = DEFAULT_TIMEOUT
) -> list[UnreachableChannel]:
    """Which of `channels` cannot be read now: for naming the culprit after a build failed."""

    async def probe() -> list[UnreachableChannel]:
        return await fetch_channels(
            Gateway(),
            [_source(c) for c in channels],
            [f"channel {channel_label(c)}" for c in channels],
            [],
            [PLATFORM, "noarch"],
            timeout,
        )

    return run_rattler(probe())


def failed_channel_note(message: str, channels: Sequence[str], *, timeout: float = DEFAULT_TIMEOUT) -> str:
    """For a build that failed fetching or solving: which channel could not be read, or
    which channels were read, so the summary names a URL instead of bare retries."""
    if not is_channel_error(message):
        return ""
    unreachable = unreachable_channels(channels, timeout=timeout)
    if unreachable:
        return "; ".join(f"{u.channel} is unreachable: {u.reason}" for u in unreachable)
    return f"channels read: {', '.join(scrub(c) for c in channels)}"
