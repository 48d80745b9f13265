"""Publish the local channel's packages to a private channel with rattler-build's own upload support.

Targets (the forms rattler-build's `publish --to` documents, plus plain-HTTP variants for self-hosted
servers on a private network):
  a directory or file:///path        copy, then index with rattler
  s3://bucket/prefix                 upload with boto3, then index with rattler's S3 indexer
  https://prefix.dev/<channel>       rattler-build prefix upload (PREFIX_API_KEY)
  prefix://<host>/<channel>          the same on a self-hosted prefix server
  https://anaconda.org/<owner>[/<label>]   rattler-build anaconda upload (ANACONDA_API_KEY)
  quetz://<host>/<channel>           rattler-build quetz upload (QUETZ_API_KEY)
  artifactory://<host>/<channel>     rattler-build artifactory upload (ARTIFACTORY_TOKEN)
(`quetz+http://`, `artifactory+http://`, `prefix+http://` talk plain HTTP.)

Nothing is overwritten: every package is compared with what the target already holds, identical
files are skipped, and one file that differs stops the run before anything is uploaded. Every
credential is looked up (environment, then rattler's auth file, then the system keyring) before
the first upload; none is ever printed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Coroutine, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urljoin, urlparse

import httpx

from ..errors import PascalForgeError
from ..rattler_run import run_rattler
from ..safe_text import redact_url, redact_urls
from ..upstream.artifacts import sha256_of
from ..util import one_line
from .local import index_channel
from .mirror import REPODATA, S3Settings, parse_repodata, split_s3_url
from .mirror.endpoints import readable_by_all

KEYRING_SERVICE = "rattler"  # where rattler (and so rattler-build) keeps tokens in the keyring


class PublishError(PascalForgeError):
    """The packages could not be published; says which file or credential and what to do."""


class MissingCredentialError(PublishError):
    """No credential for the target was found; nothing was uploaded."""


class PublishConflictError(PublishError):
    """The target already holds a different file under a name we publish; nothing was uploaded."""


@dataclass(frozen=True)
class LocalPackage:
    subdir: str
    filename: str
    path: Path
    sha256: str
    size: int

    @property
    def label(self) -> str:
        return f"{self.subdir}/{self.filename}"


@dataclass(frozen=True)
class PublishTarget:
    """A parsed `--to` URL: which service, its server, and the channel (or owner and label)."""

    kind: str
    url: str
    server: str = ""
    channel: str = ""
    label: str | None = None
    path: Path | None = None

    @property
    def host(self) -> str:
        return urlparse(self.server).hostname or ""

    @property
    def description(self) -> str:
        """How the target is named to the user: a path is said to be a local directory."""
        if self.kind == "directory" and self.path is not None:
            return f"local directory {self.path.resolve()}"
        return self.url

    def default_read_url(self) -> str | None:
        """Where the channel's repodata can be read, to compare with what we publish."""
        if self.kind == "prefix":
            parsed = urlparse(self.server)
            return f"{parsed.scheme}://repo.{parsed.netloc}/{self.channel}"
        if self.kind == "quetz":
            return f"{self.server}/get/{self.channel}"
        if self.kind == "artifactory":
            return f"{self.server}/artifactory/api/conda/{self.channel}"
        if self.kind == "anaconda":
            parsed = urlparse(self.server)
            label = f"/label/{self.label}" if self.label else ""
            return f"{parsed.scheme}://conda.{parsed.netloc}/{self.channel}{label}"
        return None


@dataclass(frozen=True)
class Credential:
    """Where a credential was found; `secret` is handed to rattler-build and never shown."""

    origin: str
    secret: str | None = field(default=None, repr=False)
    auth_file: Path | None = None


@dataclass
class PublishReport:
    target: str
    uploaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


CREDENTIAL_ENV = {
    "prefix": "PREFIX_API_KEY",
    "anaconda": "ANACONDA_API_KEY",
    "quetz": "QUETZ_API_KEY",
    "artifactory": "ARTIFACTORY_TOKEN",
}
_SERVICE_SCHEMES = ("prefix", "quetz", "artifactory", "anaconda")
KNOWN_TARGETS = (
    "a directory (./channel-copy, /srv/channel or file:///srv/channel)",
    "s3://<bucket>/<prefix>",
    "https://prefix.dev/<channel>",
    "https://anaconda.org/<owner>[/<label>]",
    "prefix://<host>/<channel>",
    "quetz://<host>/<channel>",
    "artifactory://<host>/<channel>",
    "(quetz+http://, artifactory+http://, prefix+http:// for plain HTTP)",
)
# A first path component like example.org or host:8080 names a server, not a folder.
_HOST_LIKE = re.compile(r"^(localhost|[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,})(:\d+)?$|^[^/]+:\d+$")


def _known_targets() -> str:
    return "; ".join(KNOWN_TARGETS)


def parse_target(url: str) -> PublishTarget:
    parsed = urlparse(url)
    shown = redact_url(url)
    if parsed.username is not None or parsed.password is not None:
        raise PublishError(
            f"{shown}: a credential in the URL ends up in shell history and logs; take it out of the URL "
            "and set the service's variable ($QUETZ_API_KEY, $PREFIX_API_KEY, $ANACONDA_API_KEY, "
            "$ARTIFACTORY_TOKEN) or list the host in $RATTLER_AUTH_FILE"
        )
    scheme = parsed.scheme
    base, _, transport = scheme.partition("+")
    if scheme == "s3":
        split_s3_url(url)
        return PublishTarget("s3", url.rstrip("/"))
    if scheme == "file":
        return PublishTarget("directory", url, path=Path(unquote(parsed.path)))
    if not scheme:
        return _directory_target(url)
    parts = [p for p in parsed.path.split("/") if p]
    if scheme in ("http", "https"):
        host = parsed.hostname or ""
        if host == "prefix.dev" or host.endswith(".prefix.dev"):
            base, transport = "prefix", scheme
        elif host == "anaconda.org" or host.endswith(".anaconda.org"):
            base, transport = "anaconda", scheme
        else:
            raise PublishError(
                f"{shown}: cannot tell which service this is; write quetz://, artifactory://, prefix:// "
                "or s3:// in front of the server, or give a directory"
            )
    if base not in _SERVICE_SCHEMES or transport not in ("", "http", "https"):
        raise PublishError(f"{shown}: publish does not know the scheme {scheme}://; use {_known_targets()}")
    if not parsed.netloc:
        raise PublishError(f"{shown}: name the server after {scheme}://, like {base}://host/my-channel")
    server = f"{transport or 'https'}://{parsed.netloc}"
    if base == "anaconda":
        if not parts or len(parts) > 2:
            raise PublishError(
                f"{shown}: name the owner: an anaconda target is https://anaconda.org/<owner>[/<label>]"
            )
        return PublishTarget("anaconda", url, server, parts[0], parts[1] if len(parts) == 2 else None)
    if len(parts) != 1:
        raise PublishError(
            f"{shown}: name exactly one channel after the server, like {base}://host/my-channel"
        )
    return PublishTarget(base, url, server, parts[0])


def _directory_target(text: str) -> PublishTarget:
    """A path without a scheme is a local directory, unless it starts like a server's name."""
    path = Path(text).expanduser()
    first = text.split("/", 1)[0]
    if not path.is_absolute() and not path.exists() and _HOST_LIKE.match(first):
        raise PublishError(
            f"{text}: looks like a server ({first}), not a directory: write the service's scheme in front "
            f"(quetz://{text}, artifactory://{text}, prefix://{text}), or ./{text} for a local directory"
        )
    return PublishTarget("directory", text, path=path)


# ----------------------------------------------------------------------------------------- credentials


def find_credential(target: PublishTarget, environ: dict[str, str] | None = None) -> Credential:
    """The target's credential, looked up before anything is uploaded; raises naming what to set."""
    environ = dict(os.environ if environ is None else environ)
    if target.kind == "directory":
        return Credential("none needed")
    if target.kind == "s3":
        return _s3_credential()
    variable = CREDENTIAL_ENV[target.kind]
    if environ.get(variable):
        return Credential(f"${variable}", secret=environ[variable])
    auth_file = environ.get("RATTLER_AUTH_FILE")
    if auth_file and _auth_file_covers(Path(auth_file), target.host):
        return Credential(f"$RATTLER_AUTH_FILE ({auth_file})", auth_file=Path(auth_file))
    secret = _keyring_secret(target.host)
    if secret:
        return Credential(f"keyring ({KEYRING_SERVICE}/{target.host})", secret=_token_from_keyring(secret))
    raise MissingCredentialError(
        f"no credential for {target.kind} at {target.host}: set ${variable}, list {target.host} in the "
        f"JSON file $RATTLER_AUTH_FILE names, or store it in the keyring (service {KEYRING_SERVICE!r}, "
        f"user {target.host!r}); nothing was uploaded"
    )


def _auth_file_covers(path: Path, host: str) -> bool:
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PublishError(f"$RATTLER_AUTH_FILE {path} cannot be read as JSON: {exc}") from exc
    return any(
        key == host or (key.startswith("*.") and host.endswith(key[1:]))
        for key in entries
        if isinstance(key, str)
    )


def _keyring_secret(host: str) -> str | None:
    try:
        import keyring
        from keyring.errors import KeyringError

        try:
            return keyring.get_password(KEYRING_SERVICE, host)
        except KeyringError:
            return None
    except ImportError:
        return None


def _token_from_keyring(stored: str) -> str:
    """rattler stores an authentication method as JSON ({"BearerToken": "..."}); take its token."""
    try:
        method = json.loads(stored)
    except ValueError:
        return stored
    if isinstance(method, dict):
        for key in ("BearerToken", "CondaToken"):
            if isinstance(method.get(key), str):
                return method[key]
    return stored


def _s3_credential() -> Credential:
    import boto3

    found = boto3.session.Session().get_credentials()
    if found is None or not found.access_key:
        raise MissingCredentialError(
            "no S3 credential: set $AWS_ACCESS_KEY_ID and $AWS_SECRET_ACCESS_KEY (or $AWS_PROFILE with a "
            "credentials file); nothing was uploaded"
        )
    return Credential(f"AWS credential chain ({found.method})")


# -------------------------------------------------------------------------------------- local channel


def local_packages(channel: Path) -> list[LocalPackage]:
    """Every package the local channel's repodata lists, each checked against its recorded sha256."""
    if not channel.is_dir():
        raise PublishError(f"{channel}: no channel here; build one first (pascal-forge build)")
    packages: list[LocalPackage] = []
    problems: list[str] = []
    for repodata in sorted(channel.glob(f"*/{REPODATA}")):
        subdir = repodata.parent.name
        index, found = parse_repodata(subdir, repodata.read_bytes(), str(channel))
        problems.extend(found)
        for entry in index.entries.values() if index else ():
            path = repodata.parent / entry.filename
            if not path.is_file():
                problems.append(f"{entry.label}: listed in {repodata} but missing; re-index the channel")
            elif path.stat().st_size != entry.size or sha256_of(path) != entry.sha256:
                problems.append(f"{entry.label}: differs from its record in {repodata}; re-index the channel")
            else:
                packages.append(LocalPackage(subdir, entry.filename, path, entry.sha256, entry.size))
    problems.extend(problem for package in packages if (problem := archive_problem(package)))
    if problems:
        raise PublishError(
            f"the local channel {channel} cannot be published as it is:\n  - " + "\n  - ".join(problems)
        )
    if not packages:
        raise PublishError(f"{channel}: the channel's repodata lists no packages; nothing to publish")
    return packages


def archive_problem(package: LocalPackage) -> str | None:
    """Why `package` is not a conda package that rattler can index, or None when it is one.

    A damaged archive copied into a target makes rattler's indexer fail there, for every later
    publish too: so each archive is opened, its metadata read and a .conda's members checked first.
    """
    from rattler_build import Package

    try:
        if package.filename.endswith(".conda"):
            with zipfile.ZipFile(package.path) as archive:
                members = archive.namelist()
                damaged = archive.testzip()
            if damaged:
                return f"{package.label}: its member {damaged} is damaged (bad CRC); rebuild the package"
            if not any(m.startswith("info-") for m in members) or not any(
                m.startswith("pkg-") for m in members
            ):
                return f"{package.label}: not a .conda archive (no info-*/pkg-* members); rebuild the package"
        found = Package.from_file(str(package.path))
    except Exception as exc:  # zipfile and rattler-build raise several unrelated types
        return f"{package.label}: not a readable conda package ({one_line(exc)}); rebuild it"
    if (found.filename, found.subdir) != (package.filename, package.subdir):
        return (
            f"{package.label}: its metadata says {found.subdir}/{found.filename}; "
            "a package must sit under its own name and subdir"
        )
    return None


# ------------------------------------------------------------------------------------------ the target


def _stale(indexed: dict[str, dict[str, str]], packages: Sequence[LocalPackage]) -> bool:
    """Does the target's index (subdir -> name -> sha256) miss or misstate any of `packages`?"""
    return any(indexed.get(p.subdir, {}).get(p.filename) != p.sha256 for p in packages)


def _indexed(subdir: str, raw: bytes | None, where: str) -> dict[str, str]:
    if raw is None:
        return {}
    index, _ = parse_repodata(subdir, raw, where)
    return {name: entry.sha256 for name, entry in index.entries.items()} if index else {}


class _Store:
    """What one kind of target holds, and how a verified package gets there."""

    def sha256_of(self, package: LocalPackage) -> str | None:
        raise NotImplementedError

    def upload(self, packages: Sequence[LocalPackage]) -> None:
        raise NotImplementedError

    def index(self, packages: Sequence[LocalPackage]) -> None:
        """Make the target's index list `packages` (all of ours it holds), whether or not any were
        uploaded now: a run killed between upload and index is repaired by the next one."""


@contextmanager
def _target_refusals(where: str) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        raise PublishError(f"cannot write the target {where}: {exc.strerror or exc}") from exc


class _DirectoryStore(_Store):
    def __init__(self, root: Path) -> None:
        if root.exists() and not root.is_dir():
            raise PublishError(f"{root}: the target is a file, not a channel directory; pick a folder")
        self.root = root

    def sha256_of(self, package: LocalPackage) -> str | None:
        path = self.root / package.subdir / package.filename
        return sha256_of(path) if path.is_file() else None

    def upload(self, packages: Sequence[LocalPackage]) -> None:
        with _target_refusals(str(self.root)):
            for package in packages:
                folder = self.root / package.subdir
                folder.mkdir(parents=True, exist_ok=True)
                handle, temp = tempfile.mkstemp(dir=folder, prefix=f".{package.filename}.", suffix=".partial")
                try:
                    # mkstemp makes 0600: a web server running as another user could not serve it.
                    readable_by_all(handle)
                    os.close(handle)
                    shutil.copyfile(package.path, temp)
                    os.replace(temp, folder / package.filename)
                except BaseException:
                    Path(temp).unlink(missing_ok=True)
                    raise

    def index(self, packages: Sequence[LocalPackage]) -> None:
        subdirs = {package.subdir for package in packages}
        indexed = {
            subdir: _indexed(subdir, _read_or_none(self.root / subdir / REPODATA), str(self.root))
            for subdir in subdirs
        }
        if _stale(indexed, packages):
            # The same atomic indexing as a build: readers of the published channel never see
            # a repodata.json that lists a file not yet there. Records that misstate a file are
            # read again from it rather than kept.
            misstated = {
                p.filename for p in packages if indexed[p.subdir].get(p.filename) not in (None, p.sha256)
            }
            with _target_refusals(str(self.root)):
                index_channel(self.root, subdirs, replaced=misstated)


def _read_or_none(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


class _S3Store(_Store):
    def __init__(self, url: str, settings: S3Settings) -> None:
        self.url = url
        self.bucket, self.prefix = split_s3_url(url)
        self.settings = settings
        self._s3 = settings.client()

    def _key(self, package: LocalPackage) -> str:
        relative = f"{package.subdir}/{package.filename}"
        return f"{self.prefix}/{relative}" if self.prefix else relative

    @contextmanager
    def _refusals(self, doing: str) -> Iterator[None]:
        """boto3's errors (refused connection, denied, no such bucket) as one line naming the step."""
        from boto3.exceptions import Boto3Error
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except (BotoCoreError, ClientError, Boto3Error) as exc:
            raise PublishError(f"{self.url}: cannot {doing}: {one_line(exc)}") from None

    def sha256_of(self, package: LocalPackage) -> str | None:
        from botocore.exceptions import ClientError

        with self._refusals(f"read {package.label}"):
            try:
                head = self._s3.head_object(Bucket=self.bucket, Key=self._key(package))
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                    return None
                raise
            recorded = head.get("Metadata", {}).get("sha256")
            if recorded:
                return recorded
            # Uploaded by another tool: hash its bytes rather than guess.
            body = self._s3.get_object(Bucket=self.bucket, Key=self._key(package))["Body"]
            digest = _sha256_stream(body.iter_chunks(1 << 20))
            body.close()
            return digest

    def upload(self, packages: Sequence[LocalPackage]) -> None:
        for package in packages:
            with self._refusals(f"upload {package.label}"):
                self._s3.upload_file(
                    str(package.path),
                    self.bucket,
                    self._key(package),
                    ExtraArgs={"Metadata": {"sha256": package.sha256}},
                )

    def _repodata(self, subdir: str) -> bytes | None:
        from botocore.exceptions import ClientError

        key = f"{self.prefix}/{subdir}/{REPODATA}" if self.prefix else f"{subdir}/{REPODATA}"
        with self._refusals(f"read {subdir}/{REPODATA}"):
            try:
                return self._s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                    return None
                raise

    def index(self, packages: Sequence[LocalPackage]) -> None:
        subdirs = {package.subdir for package in packages}
        indexed = {subdir: _indexed(subdir, self._repodata(subdir), self.url) for subdir in subdirs}
        if not _stale(indexed, packages):
            return
        import boto3
        from rattler.index import S3Credentials, index_s3

        # rattler's S3 indexer gets the same credential chain boto3 just used, handed over explicitly.
        frozen = boto3.session.Session().get_credentials().get_frozen_credentials()
        path_style = bool(self.settings.endpoint_url or os.environ.get("AWS_ENDPOINT_URL"))
        credentials = S3Credentials(
            self._s3.meta.endpoint_url,
            self._s3.meta.region_name,
            frozen.access_key,
            frozen.secret_key,
            frozen.token,
            addressing_style="path" if path_style else "virtual-host",
        )
        _run_indexer(index_s3(self.url, credentials, write_zst=False, write_shards=False))


MAX_REDIRECTS = 10


def _get_keeping_credentials_home(url: str, credentials: dict[str, str]) -> httpx.Response:
    """GET `url`, following redirects, with `credentials` sent only while on `url`'s own origin.

    httpx drops Authorization on a redirect to another host, but not X-API-Key, and quetz with an S3
    store redirects downloads exactly so: the key would go to the bucket's host.
    """
    home = _origin(url)
    with httpx.Client(follow_redirects=False, timeout=60) as client:
        for _ in range(MAX_REDIRECTS + 1):
            headers = credentials if _origin(url) == home else {}
            response = client.get(url, headers=headers)
            if not response.is_redirect:
                return response
            url = urljoin(url, response.headers["location"])
    raise PublishError(f"{redact_url(url)}: more than {MAX_REDIRECTS} redirects")


def _origin(url: str) -> tuple[str, str, int | None]:
    parsed = httpx.URL(url)
    return parsed.scheme, parsed.host.lower(), parsed.port


def _run_indexer(indexing: Coroutine[Any, Any, None]) -> None:
    try:
        run_rattler(indexing)
    except Exception as exc:  # rattler raises its own error types
        raise PublishError(
            f"rattler could not index the published channel: {redact_urls(str(exc))}"
        ) from None


def _sha256_stream(chunks: Any) -> str:
    import hashlib

    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
    return digest.hexdigest()


class _ServiceStore(_Store):
    """prefix.dev, anaconda.org, quetz, artifactory: upload with rattler-build, compare by repodata."""

    def __init__(self, target: PublishTarget, credential: Credential, read_url: str | None) -> None:
        self.target = target
        self.credential = credential
        self.read_url = (read_url or target.default_read_url() or "").rstrip("/")
        self._published: dict[str, dict[str, str]] = {}

    def _repodata(self, subdir: str) -> dict[str, str]:
        if subdir not in self._published:
            url = f"{self.read_url}/{subdir}/{REPODATA}"
            shown = redact_url(url)
            try:
                response = _get_keeping_credentials_home(url, self._read_headers())
            except httpx.HTTPError as exc:
                raise PublishError(
                    f"cannot read {shown} to compare with what is published: {redact_urls(str(exc))}"
                ) from None
            if response.status_code == 404:
                self._published[subdir] = {}
            elif response.status_code != 200:
                raise PublishError(
                    f"cannot read {shown} (HTTP {response.status_code}) to compare with what is published; "
                    "pass --read-url with the channel's download URL"
                )
            else:
                index, problems = parse_repodata(subdir, response.content, redact_url(self.read_url))
                if problems or index is None:
                    raise PublishError(f"{shown} does not parse as repodata: {'; '.join(problems)}")
                self._published[subdir] = {n: e.sha256 for n, e in index.entries.items()}
        return self._published[subdir]

    def _read_headers(self) -> dict[str, str]:
        secret = self.credential.secret
        if not secret:
            return {}
        if self.target.kind == "quetz":
            return {"X-API-Key": secret}
        return {"Authorization": f"Bearer {secret}"}

    def sha256_of(self, package: LocalPackage) -> str | None:
        return self._repodata(package.subdir).get(package.filename)

    def upload(self, packages: Sequence[LocalPackage]) -> None:
        from rattler_build import upload

        files = [str(p.path) for p in packages]
        secret = self.credential.secret
        auth_file = str(self.credential.auth_file) if self.credential.auth_file else None
        target = self.target
        calls: dict[str, Callable[[], None]] = {
            "prefix": lambda: upload.upload_package_to_prefix(
                files, target.server, target.channel, api_key=secret, auth_file=auth_file
            ),
            "anaconda": lambda: upload.upload_package_to_anaconda(
                files,
                target.channel,
                channel=[target.label] if target.label else None,
                api_key=secret,
                url=target.server,
                auth_file=auth_file,
            ),
            "quetz": lambda: upload.upload_package_to_quetz(
                files, target.server, target.channel, api_key=secret, auth_file=auth_file
            ),
            "artifactory": lambda: upload.upload_package_to_artifactory(
                files, target.server, target.channel, token=secret, auth_file=auth_file
            ),
        }
        try:
            calls[target.kind]()
        except Exception as exc:  # rattler-build raises its own error types
            message = str(exc).replace(secret, "***") if secret else str(exc)
            raise PublishError(
                f"{target.kind} upload to {redact_url(target.server)} failed: {redact_urls(message)}"
            ) from None


# --------------------------------------------------------------------------------------------- publish


def publish_channel(
    channel: Path,
    to: str,
    *,
    read_url: str | None = None,
    s3: S3Settings | None = None,
    dry_run: bool = False,
    environ: dict[str, str] | None = None,
) -> PublishReport:
    """Upload the packages of the local `channel` to `to`; identical files are skipped, conflicts stop."""
    target = parse_target(to)
    packages = local_packages(channel)
    credential = find_credential(target, environ)
    store = _open_store(target, credential, read_url, s3 or S3Settings())
    report = PublishReport(target=redact_url(to))
    conflicts: list[str] = []
    pending: list[LocalPackage] = []
    for package in packages:
        present = store.sha256_of(package)
        if present is None:
            pending.append(package)
        elif present == package.sha256:
            report.skipped.append(package.label)
        else:
            conflicts.append(f"{package.label}: the target holds sha256 {present}, ours is {package.sha256}")
    if conflicts:
        raise PublishConflictError(
            f"{report.target} already holds different files under names we publish; nothing was uploaded. "
            "Bump the build number of these packages (a published file name must never change content):\n  - "
            + "\n  - ".join(conflicts)
        )
    if not dry_run:
        if pending:
            store.upload(pending)
        store.index(packages)
    report.uploaded = [p.label for p in pending]
    return report


def _open_store(
    target: PublishTarget, credential: Credential, read_url: str | None, s3: S3Settings
) -> _Store:
    if target.kind == "directory":
        assert target.path is not None
        return _DirectoryStore(target.path)
    if target.kind == "s3":
        return _S3Store(target.url, s3)
    return _ServiceStore(target, credential, read_url)
