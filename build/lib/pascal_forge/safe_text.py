"""Text from elsewhere made safe to show: credentials cut out of URLs, terminal controls removed."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

# conda's token URLs: https://host/t/<token>/channel/...
_CONDA_TOKEN = re.compile(r"/t/[^/]+(?=/|$)")
# CSI and OSC sequences (colours, cursor moves, hyperlinks, window titles), then any other control
# character but newline and tab: a server's text must not drive the user's terminal.
_ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI: colours, cursor
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC: hyperlinks, titles
    r"|\x1b[@-_]?"  # any other escape
    r"|\x9b[0-?]*[ -/]*[@-~]"  # 8-bit CSI
)
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# A URL with a user:password or token part, anywhere in a message (an error quoting it).
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")


def redact_url(url: str) -> str:
    """`url` without its password or conda token; the user name is cut too, since it may be a token."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    path = _CONDA_TOKEN.sub("/t/***", parts.path)
    if netloc == parts.netloc and path == parts.path:
        return url
    return urlunsplit((parts.scheme, netloc, path, parts.query, parts.fragment))


def redact_urls(text: str) -> str:
    """Every URL in `text` redacted (see redact_url)."""
    return _URL_IN_TEXT.sub(lambda match: redact_url(match.group(0)), text)


def printable(text: str) -> str:
    """`text` without terminal escape sequences or control characters (newlines and tabs stay)."""
    return _CONTROLS.sub("", _ESCAPES.sub("", text))
