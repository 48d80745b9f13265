"""Real channels and real servers on 127.0.0.1 for the mirror and publish tests and the benchmark.

Channels hold packages built by rattler-build from tests/fixtures/mirror (no compiler, no downloads)
or assembled by rattler-build's package assembler; the HTTP server is http.server with Range
support and switches to misbehave; S3 is moto's server.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import ipaddress
import os
import re
import shutil
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "mirror"
PLATFORM = "linux-64"


def build_fixture_channel(channel: Path) -> Path:
    """Build every fixture recipe (all variants) into `channel` with rattler-build and index it."""
    from rattler_build import Stage0Recipe, VariantConfig

    empty = channel.parent / f".{channel.name}-no-dependencies"
    (empty / "noarch").mkdir(parents=True, exist_ok=True)
    for recipe_dir in sorted(p for p in FIXTURES.iterdir() if (p / "recipe.yaml").is_file()):
        variants_file = recipe_dir / "variants.yaml"
        config = VariantConfig.from_file(variants_file) if variants_file.is_file() else VariantConfig()
        for variant in Stage0Recipe.from_file(recipe_dir / "recipe.yaml").render(config):
            variant.run_build(output_dir=channel, channels=[empty.as_uri()], no_build_id=True)
    shutil.rmtree(channel / "src_cache", ignore_errors=True)
    shutil.rmtree(channel / "bld", ignore_errors=True)
    index_channel(channel)
    return channel


def private_copy(built: Path, copy: Path) -> Path:
    """A copy of the built fixture channel that one test may damage or grow."""
    shutil.copytree(built, copy)
    return copy


def index_channel(channel: Path) -> None:
    from rattler.index import index_fs

    asyncio.run(index_fs(channel, write_zst=False, write_shards=False, force=True))


def synthesize_packages(
    channel: Path, count: int, payload_bytes: int, prefix: str = "pf-synth"
) -> list[Path]:
    """`count` real .conda packages of `payload_bytes` random bytes each, assembled by rattler-build."""
    from rattler_build import ArchiveType, assemble_package

    staging = channel.parent / f".{channel.name}-staging"
    made = []
    for number in range(count):
        files = staging / str(number)
        (files / "share" / prefix).mkdir(parents=True, exist_ok=True)
        (files / "share" / prefix / "payload.bin").write_bytes(os.urandom(payload_bytes))
        output = assemble_package(
            name=f"{prefix}-{number:04d}",
            version="1.0.0",
            target_platform=PLATFORM,
            build_string="h0_0",
            output_dir=channel / PLATFORM,
            files_dir=files,
            compression_level=0,
            archive_type=ArchiveType.Conda,
            detect_prefix=False,
        )
        made.append(output.path)
        shutil.rmtree(files)
    shutil.rmtree(staging, ignore_errors=True)
    return made


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def visible_packages(channel: Path) -> dict[str, str]:
    """subdir/name -> sha256 of every non-hidden package file in a channel directory."""
    return {
        f"{p.parent.name}/{p.name}": sha256_of(p)
        for p in sorted(channel.glob("*/*"))
        if p.is_file() and not p.name.startswith(".") and p.name.endswith((".conda", ".tar.bz2"))
    }


# ------------------------------------------------------------------------------------------ HTTP server


@dataclass
class Misbehaviour:
    """Switches the test server reads on every request; tests flip them between runs."""

    truncate: set[str] = field(default_factory=set)  # file names whose body is cut in half
    seconds_per_chunk: float = 0.0  # slows every body down, so a run can be interrupted mid-file
    # The first package asked for waits until this many other package bodies went out whole (or
    # `hold_seconds` passed), as a slow download would: shows whether one holds the others back.
    hold_first_until_served: int = 0
    hold_seconds: float = 0.0
    held: str | None = None
    served: list[str] = field(default_factory=list)  # package bodies sent whole, in order
    requests: list[str] = field(default_factory=list)
    # (path, Authorization header or None) of every request, to see where a credential went.
    authorizations: list[tuple[str, str | None]] = field(default_factory=list)
    api_keys: list[tuple[str, str | None]] = field(default_factory=list)  # quetz's X-API-Key
    forbid_missing: bool = False  # 403 instead of 404 for what is not there (S3 behind a CDN does)
    status: dict[str, tuple[int, str]] = field(default_factory=dict)  # path suffix -> (code, reason)
    redirect_to: str | None = None  # 302 every request for a `redirected` file to this base URL
    redirected: tuple[str, ...] = (".conda", ".tar.bz2")
    require_authorization: str | None = None  # 401 unless the Authorization header is exactly this
    lock: threading.Lock = field(default_factory=threading.Lock)
    _release: threading.Event = field(default_factory=threading.Event, init=False, repr=False)

    def hold_if_first(self, name: str) -> None:
        if not self.hold_first_until_served:
            return
        with self.lock:
            if self.held is not None:
                return
            self.held = name
        self._release.wait(self.hold_seconds)

    def body_served(self, name: str) -> None:
        with self.lock:
            self.served.append(name)
            if name != self.held and len(self.served) >= self.hold_first_until_served:
                self._release.set()


class ChannelRequestHandler(SimpleHTTPRequestHandler):
    """http.server's static handler plus single-range requests (like any production web server)."""

    misbehaviour: Misbehaviour
    chunk = 64 * 1024

    def __init__(self, *args, misbehaviour: Misbehaviour, **kwargs) -> None:
        self.misbehaviour = misbehaviour
        super().__init__(*args, **kwargs)

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        rules = self.misbehaviour
        with rules.lock:
            rules.requests.append(self.path)
            rules.authorizations.append((self.path, self.headers.get("Authorization")))
            rules.api_keys.append((self.path, self.headers.get("X-API-Key")))
        if rules.require_authorization and self.headers.get("Authorization") != rules.require_authorization:
            return self._answer(401, "Unauthorized")
        for suffix, (code, reason) in rules.status.items():
            if self.path.endswith(suffix):
                return self._answer(code, reason)
        path = Path(self.translate_path(self.path))
        if rules.redirect_to and path.name.endswith(rules.redirected):
            self.send_response(302)
            self.send_header("Location", f"{rules.redirect_to}{self.path}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        if not path.is_file():
            if rules.forbid_missing:
                return self._answer(403, "Forbidden")
            return super().do_GET()
        size = path.stat().st_size
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
        if match and int(match.group(1)) < size:
            start = int(match.group(1))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        else:
            self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(size - start))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        package = path.name.endswith((".conda", ".tar.bz2"))
        if package:
            self.misbehaviour.hold_if_first(path.name)
        limit = size
        if path.name in self.misbehaviour.truncate:
            limit = size // 2
            self.close_connection = True
        with open(path, "rb") as handle:
            handle.seek(start)
            position = start
            while position < limit:
                data = handle.read(min(self.chunk, limit - position))
                if not data:
                    break
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    return
                position += len(data)
                if self.misbehaviour.seconds_per_chunk:
                    time.sleep(self.misbehaviour.seconds_per_chunk)
        if package and position == size:
            self.misbehaviour.body_served(path.name)
        return None

    def _answer(self, code: int, reason: str) -> None:
        """A bodiless answer with `reason` sent verbatim, as a hostile or broken server might."""
        self.send_response_only(code, reason)
        self.send_header("Content-Length", "0")
        self.end_headers()


@contextlib.contextmanager
def serve_directory(
    root: Path, misbehaviour: Misbehaviour | None = None, tls: ssl.SSLContext | None = None
) -> Iterator[tuple[str, Misbehaviour]]:
    """Serve `root` over HTTP (HTTPS with `tls`) on 127.0.0.1; yields (base URL, the switches)."""
    misbehaviour = misbehaviour or Misbehaviour()
    handler = partial(ChannelRequestHandler, directory=str(root), misbehaviour=misbehaviour)
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    if tls:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{server.server_address[1]}", misbehaviour
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def server_tls(folder: Path) -> tuple[ssl.SSLContext, Path]:
    """A TLS context for 127.0.0.1 signed by a throwaway CA; returns it and the CA's PEM file."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def name(common_name: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])

    def certificate(subject: str, key, issuer: str, issuer_key, ca: bool) -> x509.Certificate:
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(subject))
            .issuer_name(name(issuer))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
            )
        )
        if ca:
            builder = builder.add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
        else:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = certificate("pascal-forge test CA", ca_key, "pascal-forge test CA", ca_key, ca=True)
    leaf = certificate("127.0.0.1", server_key, "pascal-forge test CA", ca_key, ca=False)
    ca_file, chain_file, key_file = folder / "ca.pem", folder / "server.pem", folder / "server-key.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    chain_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(chain_file, key_file)
    return context, ca_file


# -------------------------------------------------------------------------------------------- S3 server


@contextlib.contextmanager
def moto_s3() -> Iterator[str]:
    """A moto S3 server on 127.0.0.1 with throwaway credentials in the environment; yields its URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    saved = {k: os.environ.get(k) for k in _S3_ENV}
    os.environ.update(
        AWS_ACCESS_KEY_ID="pascal-forge-test",
        AWS_SECRET_ACCESS_KEY="pascal-forge-test-secret",
        AWS_REGION="us-east-1",
        AWS_ENDPOINT_URL=endpoint,
    )
    os.environ.pop("AWS_PROFILE", None)
    try:
        yield endpoint
    finally:
        # moto keeps buckets in process-wide state: empty it so the next test starts clean.
        import httpx

        httpx.post(f"{endpoint}/moto-api/reset")
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        server.stop()


_S3_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "AWS_ENDPOINT_URL", "AWS_PROFILE")


def s3_client():
    import boto3

    return boto3.client("s3")


def upload_directory(root: Path, bucket: str, prefix: str) -> None:
    client = s3_client()
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.name.startswith("."):
            client.upload_file(str(path), bucket, f"{prefix}/{path.relative_to(root).as_posix()}")


# ----------------------------------------------------------------------------- an upload service stand-in


@contextlib.contextmanager
def recording_service(published: Path, log: Path) -> Iterator[str]:
    """A quetz-shaped server in its own process: GET /get/... serves `published`, uploads are logged.

    It runs in another process because rattler-build's upload functions hold the GIL while they
    wait for the server, so a server thread in the test process would never answer.
    """
    import subprocess
    import sys

    port_file = log.with_suffix(".port")
    port_file.unlink(missing_ok=True)
    process = subprocess.Popen([sys.executable, __file__, "record", str(published), str(log), str(port_file)])
    try:
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text().strip():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the recording server did not start")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port_file.read_text().strip()}"
    finally:
        process.terminate()
        process.wait(timeout=30)


def recorded_requests(log: Path) -> list[dict]:
    import json

    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def _serve_recording(published: Path, log: Path, port_file: Path) -> None:
    import json
    from http.server import BaseHTTPRequestHandler

    class Recorder(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                parts = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        self.rfile.readline()
                        return b"".join(parts)
                    parts.append(self.rfile.read(size))
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _record(self, body: bytes) -> None:
            entry = {
                "method": self.command,
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body_sha256": hashlib.sha256(body).hexdigest(),
                "body_length": len(body),
            }
            with open(log, "a", encoding="utf-8") as out:
                out.write(json.dumps(entry) + "\n")

        def do_GET(self) -> None:
            self._record(b"")
            relative = self.path.split("?")[0].removeprefix("/get/")
            target = published / relative
            if ".." in relative or not target.is_file():
                self.send_error(404)
                return
            data = target.read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            self._record(self._body())
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        do_PUT = do_POST

    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    port_file.write_text(str(server.server_address[1]))
    server.serve_forever()


# ------------------------------------------------------------------------- a run frozen at one file step

_CHANGING = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_STEP_EVENTS = {
    "open",
    "os.rename",
    "os.remove",
    "os.truncate",
    "os.mkdir",
    "os.rmdir",
    "os.link",
    "os.symlink",
}


def freeze_at_step(step: int, watched: Path, argv: list[str]) -> int:
    """Run `pascal-forge argv`, stopping this process (SIGSTOP) just before its `step`-th change to a
    file under `watched` (creating, opening for writing, renaming, deleting), as seen by Python's
    audit hooks. The parent looks at the destination while it is frozen, then kills it."""
    import signal
    import sys

    root = str(watched)
    count = 0

    def hook(event: str, args: tuple) -> None:
        nonlocal count
        if event not in _STEP_EVENTS or not args or not isinstance(args[0], str | os.PathLike):
            return
        paths = [os.fspath(a) for a in args[:2] if isinstance(a, str | os.PathLike)]
        if not any(p.startswith(root) for p in paths):
            return
        if event == "open" and not (isinstance(args[2], int) and args[2] & _CHANGING):
            return
        count += 1
        if count == step:
            sys.stderr.write(f"frozen before step {step}: {event} {paths}\n")
            sys.stderr.flush()
            os.kill(os.getpid(), signal.SIGSTOP)

    from pascal_forge.cli import main

    sys.addaudithook(hook)
    return main(argv)


if __name__ == "__main__":
    import sys

    if sys.argv[1:2] == ["record"]:
        _serve_recording(Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]))
    if sys.argv[1:2] == ["freeze-at"]:
        sys.exit(freeze_at_step(int(sys.argv[2]), Path(sys.argv[3]), sys.argv[4:]))
