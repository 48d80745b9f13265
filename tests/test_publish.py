"""`pascal-forge publish`: real packages to a directory, a moto S3 server and a quetz-shaped server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mirror_support import (
    PLATFORM,
    build_fixture_channel,
    index_channel,
    moto_s3,
    private_copy,
    recorded_requests,
    recording_service,
    s3_client,
    sha256_of,
    synthesize_packages,
    visible_packages,
)

from pascal_forge.cli import main
from pascal_forge.publish import (
    MissingCredentialError,
    PublishConflictError,
    PublishError,
    find_credential,
    parse_target,
    publish_channel,
)

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
