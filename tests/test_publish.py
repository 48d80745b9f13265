"""`pascal-forge publish`: real packages to a directory, a moto S3 server and a quetz-shaped server."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from support.mirror import (
    PLATFORM,
    Misbehaviour,
    build_fixture_channel,
    index_channel,
    moto_s3,
    private_copy,
    recorded_requests,
    recording_service,
    s3_client,
    serve_directory,
    sha256_of,
    synthesize_packages,
    visible_packages,
)

from pascal_forge.channel.publish import (
    MissingCredentialError,
    PublishConflictError,
    PublishError,
    find_credential,
    parse_target,
    publish_channel,
)
from pascal_forge.cli import main

SECRET = "pf-test-token-0123456789abcdef"
NO_KEYRING = "keyring.backends.null.Keyring"


@pytest.fixture(scope="session")
def built_channel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_fixture_channel(tmp_path_factory.mktemp("built") / "channel")


@pytest.fixture
def channel(built_channel: Path, tmp_path: Path) -> Path:
    return private_copy(built_channel, tmp_path / "channel")


@pytest.fixture
def no_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No token in the environment, an auth file that lists nothing, no keyring, no AWS chain."""
    for variable in (
        "PREFIX_API_KEY",
        "ANACONDA_API_KEY",
        "QUETZ_API_KEY",
        "ARTIFACTORY_TOKEN",
        "AWS_PROFILE",
    ):
        monkeypatch.delenv(variable, raising=False)
    for variable in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(variable, raising=False)
    auth = tmp_path / "auth.json"
    auth.write_text("{}")
    monkeypatch.setenv("RATTLER_AUTH_FILE", str(auth))
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", NO_KEYRING)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def add_packages(channel: Path, count: int = 2) -> list[Path]:
    made = synthesize_packages(channel, count, 64 * 1024, prefix="pf-new")
    index_channel(channel)
    return made


def test_publish_to_a_directory_copies_indexes_and_skips_identical_files(
    channel: Path, tmp_path: Path
) -> None:
    target = tmp_path / "published"
    planned = publish_channel(channel, str(target), dry_run=True)
    assert len(planned.uploaded) == 10 and not target.exists()
    first = publish_channel(channel, str(target))
    assert len(first.uploaded) == 10 and first.skipped == []
    assert visible_packages(target) == visible_packages(channel)
    indexed = {
        f"{p.parent.name}/{name}": record["sha256"]
        for p in target.glob("*/repodata.json")
        for name, record in json.loads(p.read_text())["packages.conda"].items()
    }
    assert indexed == visible_packages(channel)

    new = add_packages(channel)
    second = publish_channel(channel, target.as_uri())
    assert sorted(second.uploaded) == sorted(f"{PLATFORM}/{p.name}" for p in new)
    assert len(second.skipped) == 10


def test_a_conflicting_file_stops_the_publish_before_anything_is_uploaded(
    channel: Path, tmp_path: Path
) -> None:
    target = tmp_path / "published"
    publish_channel(channel, str(target))
    clash = target / "noarch" / "pf-common-1.0.0-h4616a5c_0.conda"
    clash.write_bytes(clash.read_bytes() + b"other build, same name")
    before = visible_packages(target)
    new = add_packages(channel)

    with pytest.raises(PublishConflictError) as error:
        publish_channel(channel, str(target))
    assert "noarch/pf-common-1.0.0-h4616a5c_0.conda: the target holds sha256" in str(error.value)
    assert visible_packages(target) == before
    assert not any((target / PLATFORM / p.name).exists() for p in new)


def test_a_local_package_that_differs_from_its_index_is_not_published(channel: Path, tmp_path: Path) -> None:
    damaged = channel / "noarch" / "pf-common-1.0.0-h4616a5c_0.conda"
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    with pytest.raises(PublishError, match=r"noarch/pf-common-1\.0\.0-h4616a5c_0\.conda: differs"):
        publish_channel(channel, str(tmp_path / "published"))
    assert not (tmp_path / "published").exists()


def test_publish_to_s3_uploads_indexes_skips_and_refuses_conflicts(channel: Path) -> None:
    with moto_s3():
        s3 = s3_client()
        s3.create_bucket(Bucket="pascal")
        first = publish_channel(channel, "s3://pascal/forge")
        assert len(first.uploaded) == 10
        repodata = json.loads(s3.get_object(Bucket="pascal", Key="forge/noarch/repodata.json")["Body"].read())
        assert set(repodata["packages.conda"]) == {
            "cuda-version-12.4-h3d414b0_0.conda",
            "cuda-version-12.8-h9efc243_0.conda",
            "pf-common-1.0.0-h4616a5c_0.conda",
        }
        body = s3.get_object(Bucket="pascal", Key="forge/noarch/pf-common-1.0.0-h4616a5c_0.conda")[
            "Body"
        ].read()
        assert body == (channel / "noarch" / "pf-common-1.0.0-h4616a5c_0.conda").read_bytes()

        again = publish_channel(channel, "s3://pascal/forge")
        assert again.uploaded == [] and len(again.skipped) == 10

        # An object put there by another tool, without our sha256 metadata, is hashed and compared.
        s3.put_object(
            Bucket="pascal", Key=f"forge/{PLATFORM}/pf-extra-2.0.0-hb0f4dca_0.conda", Body=b"not it"
        )
        with pytest.raises(PublishConflictError, match=r"pf-extra-2\.0\.0-hb0f4dca_0\.conda"):
            publish_channel(channel, "s3://pascal/forge")


@pytest.mark.parametrize(
    ("url", "variable"),
    [
        ("https://prefix.dev/pascal-forge", "PREFIX_API_KEY"),
        ("https://anaconda.org/pascal-owner/pascal-label", "ANACONDA_API_KEY"),
        ("quetz+http://127.0.0.1:9/pascal", "QUETZ_API_KEY"),
        ("artifactory://127.0.0.1:9/pascal", "ARTIFACTORY_TOKEN"),
        ("s3://pascal/forge", "AWS_ACCESS_KEY_ID"),
    ],
)
def test_a_missing_credential_is_named_before_anything_is_uploaded(
    channel: Path, no_credentials: None, url: str, variable: str, capsys: pytest.CaptureFixture
) -> None:
    # Port 9 (discard) on loopback: were anything sent, it would fail differently.
    with pytest.raises(MissingCredentialError, match=rf"\${variable}.*nothing was uploaded"):
        publish_channel(channel, url)
    assert main(["publish", "--channel", str(channel), "--to", url]) == 2
    assert variable in capsys.readouterr().err


def test_quetz_upload_sends_every_new_package_and_never_shows_the_token(
    channel: Path, tmp_path: Path, no_credentials: None, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    published = tmp_path / "already-there" / "pascal"
    (published / "noarch").mkdir(parents=True)
    same = channel / "noarch" / "pf-common-1.0.0-h4616a5c_0.conda"
    (published / "noarch" / "repodata.json").write_text(
        json.dumps({"packages.conda": {same.name: {"sha256": sha256_of(same), "size": same.stat().st_size}}})
    )
    monkeypatch.setenv("QUETZ_API_KEY", SECRET)
    log = tmp_path / "requests.jsonl"
    with recording_service(published.parent, log) as server:
        url = server.replace("http://", "quetz+http://") + "/pascal"
        assert main(["publish", "--channel", str(channel), "--to", url]) == 0
    uploads = [r for r in recorded_requests(log) if r["method"] == "POST"]
    expected = {p.name: sha256_of(p) for p in channel.glob("*/*.conda") if p.name != same.name}
    assert {r["path"].split("/upload/")[1].split("?")[0]: r["body_sha256"] for r in uploads} == expected
    assert all(r["headers"].get("x-api-key") == SECRET for r in uploads)
    output = capsys.readouterr()
    assert "uploaded 9 package(s); 1 already there" in output.out
    assert SECRET not in output.out + output.err

    # Twin: the service holds another file under one of our names, so nothing goes up at all.
    (published / "noarch" / "repodata.json").write_text(
        json.dumps({"packages.conda": {same.name: {"sha256": "0" * 64, "size": 1}}})
    )
    log.unlink()
    with recording_service(published.parent, log) as server:
        url = server.replace("http://", "quetz+http://") + "/pascal"
        assert main(["publish", "--channel", str(channel), "--to", url]) == 2
    assert not [r for r in recorded_requests(log) if r["method"] == "POST"]
    assert same.name in capsys.readouterr().err


def test_the_token_may_come_from_rattlers_auth_file(
    channel: Path, tmp_path: Path, no_credentials: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "requests.jsonl"
    with recording_service(tmp_path / "nothing-published", log) as server:
        auth = tmp_path / "rattler-auth.json"
        auth.write_text(json.dumps({"127.0.0.1": {"CondaToken": SECRET}}))
        monkeypatch.setenv("RATTLER_AUTH_FILE", str(auth))
        report = publish_channel(channel, server.replace("http://", "quetz+http://") + "/pascal")
    uploads = [r for r in recorded_requests(log) if r["method"] == "POST"]
    assert len(uploads) == len(report.uploaded) == 10
    assert {r["headers"].get("x-api-key") for r in uploads} == {SECRET}


def test_the_token_may_come_from_the_keyring(no_credentials: None) -> None:
    import keyring
    from keyring.backend import KeyringBackend

    class MemoryKeyring(KeyringBackend):
        priority = 1

        def __init__(self) -> None:
            super().__init__()
            self.stored = {("rattler", "quetz.example"): json.dumps({"CondaToken": SECRET})}

        def get_password(self, service: str, username: str) -> str | None:
            return self.stored.get((service, username))

        def set_password(self, service: str, username: str, password: str) -> None:
            self.stored[(service, username)] = password

        def delete_password(self, service: str, username: str) -> None:
            self.stored.pop((service, username), None)

    previous = keyring.get_keyring()
    keyring.set_keyring(MemoryKeyring())
    try:
        credential = find_credential(parse_target("quetz://quetz.example/pascal"))
        assert credential.secret == SECRET and "keyring" in credential.origin
        assert SECRET not in repr(credential)
        with pytest.raises(MissingCredentialError, match="QUETZ_API_KEY"):
            find_credential(parse_target("quetz://other.example/pascal"))
    finally:
        keyring.set_keyring(previous)


@pytest.mark.parametrize(
    ("url", "kind", "server", "channel_name", "label"),
    [
        ("https://prefix.dev/pascal", "prefix", "https://prefix.dev", "pascal", None),
        ("https://anaconda.org/owner/dev", "anaconda", "https://anaconda.org", "owner", "dev"),
        ("quetz://quetz.example/pascal", "quetz", "https://quetz.example", "pascal", None),
        ("artifactory+http://art.local:8081/conda", "artifactory", "http://art.local:8081", "conda", None),
    ],
)
def test_targets_parse(url: str, kind: str, server: str, channel_name: str, label: str | None) -> None:
    target = parse_target(url)
    assert (target.kind, target.server, target.channel, target.label) == (kind, server, channel_name, label)


@pytest.mark.parametrize("url", ["https://example.org/x", "quetz://host", "ftp://host/x", "quetz://host/a/b"])
def test_unknown_targets_are_refused(url: str) -> None:
    with pytest.raises(PublishError):
        parse_target(url)


# ------------------------------------------------------------------ issue 17: hostile and unlucky runs


def indexed_records(target: Path) -> dict[str, str]:
    return {
        f"{p.parent.name}/{name}": record["sha256"]
        for p in target.glob("*/repodata.json")
        for key in ("packages", "packages.conda")
        for name, record in (json.loads(p.read_text()).get(key) or {}).items()
    }


def test_a_rerun_with_nothing_to_upload_repairs_a_missing_or_stale_index(
    channel: Path, tmp_path: Path
) -> None:
    target = tmp_path / "published"
    publish_channel(channel, str(target))
    # A run killed between the copies and the index leaves the files and no repodata.json.
    (target / PLATFORM / "repodata.json").unlink()
    again = publish_channel(channel, str(target))
    assert again.uploaded == [] and len(again.skipped) == 10
    assert indexed_records(target) == visible_packages(channel)
    # One whose records no longer match the files is repaired too.
    noarch = target / "noarch" / "repodata.json"
    data = json.loads(noarch.read_text())
    for record in data["packages.conda"].values():
        record["sha256"] = "0" * 64
    noarch.write_text(json.dumps(data))
    publish_channel(channel, str(target))
    assert indexed_records(target) == visible_packages(channel)


def test_a_rerun_repairs_a_missing_index_on_s3(channel: Path) -> None:
    with moto_s3():
        s3 = s3_client()
        s3.create_bucket(Bucket="pascal")
        publish_channel(channel, "s3://pascal/forge")
        s3.delete_object(Bucket="pascal", Key="forge/noarch/repodata.json")
        again = publish_channel(channel, "s3://pascal/forge")
        assert again.uploaded == []
        repodata = json.loads(s3.get_object(Bucket="pascal", Key="forge/noarch/repodata.json")["Body"].read())
    assert len(repodata["packages.conda"]) == 3


def rerecord(channel: Path, package: Path) -> None:
    """Make the local index agree with a package's bytes, however damaged they are."""
    repodata_path = package.parent / "repodata.json"
    data = json.loads(repodata_path.read_text())
    data["packages.conda"][package.name].update(sha256=sha256_of(package), size=package.stat().st_size)
    repodata_path.write_text(json.dumps(data))


@pytest.mark.parametrize("damage", ["flipped-bytes", "not-an-archive"])
def test_a_damaged_archive_is_refused_before_anything_is_copied(
    channel: Path, tmp_path: Path, damage: str, capsys: pytest.CaptureFixture
) -> None:
    package = channel / "noarch" / "pf-common-1.0.0-h4616a5c_0.conda"
    data = bytearray(package.read_bytes())
    if damage == "flipped-bytes":
        for offset in range(len(data) // 3, len(data) // 3 + 64):
            data[offset] ^= 0xFF
    else:
        data = bytearray(b"not a conda package")
    package.write_bytes(bytes(data))
    rerecord(channel, package)
    target = tmp_path / "published"
    assert main(["publish", "--channel", str(channel), "--to", str(target)]) == 2
    assert "noarch/pf-common-1.0.0-h4616a5c_0.conda" in capsys.readouterr().err
    assert not target.exists()


def test_published_packages_are_readable_by_a_web_server_running_as_another_user(
    channel: Path, tmp_path: Path
) -> None:
    previous = os.umask(0o022)
    try:
        publish_channel(channel, str(tmp_path / "published"))
    finally:
        os.umask(previous)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "published").glob("*/*")}
    assert modes and set(modes.values()) == {0o644}, modes


def test_the_quetz_key_never_follows_a_redirect_to_another_host(
    channel: Path, no_credentials: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("QUETZ_API_KEY", SECRET)
    (tmp_path / "store").mkdir()
    with (
        serve_directory(tmp_path / "store") as (store_url, store),
        serve_directory(tmp_path, Misbehaviour(redirect_to=store_url, redirected=("repodata.json",))) as (
            url,
            quetz,
        ),
    ):
        target = url.replace("http://", "quetz+http://") + "/pascal"
        report = publish_channel(channel, target, dry_run=True)
    assert len(report.uploaded) == 10
    assert quetz.api_keys and {key for _, key in quetz.api_keys} == {SECRET}
    # quetz with an S3 store redirects /get/ to the bucket's host: the key must not go there.
    assert store.requests and {key for _, key in store.api_keys} == {None}


def test_a_credential_in_the_target_url_is_never_printed(
    channel: Path, no_credentials: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("QUETZ_API_KEY", SECRET)
    # Port 9 (discard) on loopback refuses: an error quoting the URL would show the password.
    url = "quetz+http://uploader:pw-0123456789@127.0.0.1:9/pascal"
    assert main(["publish", "--channel", str(channel), "--to", url]) == 2
    output = capsys.readouterr()
    assert "pw-0123456789" not in output.out + output.err
    assert "quetz+http://***@127.0.0.1:9/pascal" in output.err


def test_a_target_that_is_a_file_is_named_in_one_line(
    channel: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    target = tmp_path / "a-file"
    target.write_text("not a channel")
    assert main(["publish", "--channel", str(channel), "--to", str(target)]) == 2
    err = capsys.readouterr().err
    assert "the target is a file" in err and "Traceback" not in err


def test_s3_refusals_are_named_in_one_line(
    channel: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with moto_s3():
        # No such bucket: the upload is refused.
        assert main(["publish", "--channel", str(channel), "--to", "s3://no-such-bucket/forge"]) == 2
        err = capsys.readouterr().err
        assert "cannot upload" in err and "NoSuchBucket" in err and "Traceback" not in err
        # Nobody listening: the connection is refused.
        with socket.socket() as closed:
            closed.bind(("127.0.0.1", 0))
            endpoint = f"http://127.0.0.1:{closed.getsockname()[1]}"
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        assert main(["publish", "--channel", str(channel), "--to", "s3://pascal/forge"]) == 2
        err = capsys.readouterr().err
        assert endpoint in err and "Traceback" not in err


def test_a_ctrl_c_while_publish_starts_is_one_line(
    channel: Path, no_credentials: None, tmp_path: Path
) -> None:
    # A server that takes the connection and never answers: publish waits in its first request.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    accepted = threading.Event()

    def take_and_hold() -> None:
        connection, _ = listener.accept()
        accepted.set()
        connection.recv(65536)
        time.sleep(30)
        connection.close()

    threading.Thread(target=take_and_hold, daemon=True).start()
    target = f"quetz+http://127.0.0.1:{listener.getsockname()[1]}/pascal"
    run = subprocess.Popen(
        [sys.executable, "-m", "pascal_forge.cli", "publish", "--channel", str(channel), "--to", target],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "QUETZ_API_KEY": SECRET},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert accepted.wait(60), run.communicate(timeout=5)
        run.send_signal(signal.SIGINT)
        _, err = run.communicate(timeout=60)
    finally:
        listener.close()
    assert run.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err and SECRET not in err


def _wait_until_python_handles_sigint(pid: int, timeout: float = 60.0) -> None:
    """Until Python has installed its SIGINT handler: before that a Ctrl-C is SIG_DFL's silent death.

    The kernel lists caught signals as a hex mask on /proc/PID/status's SigCgt line; SIGINT is bit 2.
    Waiting on it, not on the clock, keeps a slow start-up on a loaded CI machine from looking like
    our bug: CI saw returncode -2 and an empty stderr after a fixed half-second sleep.
    """
    deadline = time.monotonic() + timeout
    status = Path(f"/proc/{pid}/status")
    while time.monotonic() < deadline:
        try:
            lines = status.read_text().splitlines()
        except FileNotFoundError:
            return  # it has already ended; the caller's communicate() tells how
        for line in lines:
            if line.startswith("SigCgt:") and int(line.split()[1], 16) & (1 << (signal.SIGINT - 1)):
                return
        time.sleep(0.005)
    raise AssertionError(f"process {pid} never installed a SIGINT handler in {timeout:.0f} s")


# The delays count from the moment Python's own handler is in place, not from the spawn. What
# is left of Python's start-up after that (site, runpy, finding our package) takes milliseconds
# and is out of reach; our try block covers everything from the import of the command line on.
@pytest.mark.parametrize("after_seconds", [0.25, 0.75, 1.5])
def test_a_ctrl_c_at_any_moment_of_start_up_is_never_a_traceback(
    channel: Path, tmp_path: Path, after_seconds: float
) -> None:
    # `python -m pascal_forge` is what the `pascal-forge` command runs: importing the command line
    # takes about half a second, and a Ctrl-C lands in it, in argument parsing or in the work.
    command = ["publish", "--channel", str(channel), "--to", str(tmp_path / "t")]
    run = subprocess.Popen(
        [sys.executable, "-m", "pascal_forge", *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    _wait_until_python_handles_sigint(run.pid)
    time.sleep(after_seconds)
    run.send_signal(signal.SIGINT)
    out, err = run.communicate(timeout=120)
    assert "Traceback" not in err, err
    # 130 from our handlers, or -SIGINT when the interrupt lands in Python's own shutdown after
    # our line was printed. A command that got to its summary may also end by -SIGINT: Python
    # restores SIG_DFL as it shuts down, and CI's loaded runners hit that moment.
    interrupted = run.returncode in (130, -signal.SIGINT) and "error: interrupted" in err
    summary = re.search(r"uploaded \d+ package\(s\)", out)
    finished = summary is not None and run.returncode in (0, -signal.SIGINT)
    assert interrupted or finished, (run.returncode, out, err)
