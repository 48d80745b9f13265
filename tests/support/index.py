"""A PEP 503 simple index on 127.0.0.1 for tests: real files, a real HTTP server.

`pascal-forge` talks to it through the real pypi-simple client, pointed here by
$PASCAL_FORGE_INDEX_URL, so the bump code runs exactly as it does against PyPI.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import html
import socket
import threading
import zipfile
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def make_wheel(folder: Path, project: str, version: str, files: dict[str, str], requires: list[str]) -> Path:
    """A minimal but valid wheel: the given files plus a .dist-info with METADATA."""
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"{project}-{version}-py3-none-any.whl"
    info = f"{project}-{version}.dist-info"
    metadata = "".join(
        [f"Metadata-Version: 2.1\nName: {project}\nVersion: {version}\n"]
        + [f"Requires-Dist: {line}\n" for line in requires]
    )
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
        archive.writestr(f"{info}/METADATA", metadata)
        archive.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        archive.writestr(f"{info}/RECORD", "")
    return wheel


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_index(root: Path, projects: dict[str, list[Path]]) -> Path:
    """root/simple/<project>/index.html linking to root/files/<file>#sha256=..."""
    (root / "files").mkdir(parents=True, exist_ok=True)
    for project, files in projects.items():
        page = root / "simple" / project
        page.mkdir(parents=True, exist_ok=True)
        links = []
        for file in files:
            target = root / "files" / file.name
            if file != target:
                target.write_bytes(file.read_bytes())
            href = html.escape(f"../../files/{file.name}#sha256={sha256(target)}")
            links.append(f'<a href="{href}">{html.escape(file.name)}</a><br/>')
        page.joinpath("index.html").write_text(
            "<!DOCTYPE html><html><body>\n" + "\n".join(links) + "\n</body></html>\n", encoding="utf-8"
        )
    return root


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


@contextlib.contextmanager
def serve_index(root: Path) -> Iterator[str]:
    """Serve `root` on 127.0.0.1; yield the simple index's URL."""
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/simple/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def closed_port_url() -> str:
    """An index URL on 127.0.0.1 where nothing listens (the port was just released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/simple/"
