"""`pascal-forge mirror`: real packages, a real HTTP server and a real S3 server, all on 127.0.0.1."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import re
import resource
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from support.mirror import (
    PLATFORM,
    Misbehaviour,
    build_fixture_channel,
    index_channel,
    moto_s3,
    private_copy,
    s3_client,
    serve_directory,
    server_tls,
    sha256_of,
    synthesize_packages,
    upload_directory,
    visible_packages,
)

from pascal_forge.channel.mirror import (
    ClosureRequest,
    MirrorError,
    MirrorReport,
    mirror_channel,
    unsafe_name_reason,
)
from pascal_forge.channel.mirror.transfer import _BackgroundDigest
from pascal_forge.cli import main
from pascal_forge.errors import PascalForgeError

CLOSURE_SET = {
    f"{PLATFORM}/vllm-pascal-0.14.0-cuda128_py312_0.conda",
    f"{PLATFORM}/python-3.12.7-hb988f3d_0.conda",
    "noarch/cuda-version-12.8-h9efc243_0.conda",
    "noarch/pf-common-1.0.0-h4616a5c_0.conda",
}


@pytest.fixture(scope="session")
def built_channel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_fixture_channel(tmp_path_factory.mktemp("built") / "channel")


@pytest.fixture
def source(built_channel: Path, tmp_path: Path) -> Path:
    return private_copy(built_channel, tmp_path / "source")


@pytest.fixture
def good_mirror(source: Path, tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    """A mirror of the unchanged source, and its repodata: the last good state later runs must keep."""
    dest = tmp_path / "mirror"
    mirror_channel(str(source), str(dest))
    return dest, repodata_bytes(dest)


def grow(channel: Path, count: int = 3, payload_bytes: int = 256 * 1024) -> list[Path]:
    """Publish new packages in the source channel, as a channel operator would between two mirror runs."""
    made = synthesize_packages(channel, count, payload_bytes)
    index_channel(channel)
    return made


def mirror_over_http(source: Path, dest: Path, **options: object) -> MirrorReport:
    with serve_directory(source) as (url, _):
        return mirror_channel(url, str(dest), **options)


def repodata_bytes(channel: Path) -> dict[str, bytes]:
    return {p.parent.name: p.read_bytes() for p in sorted(channel.glob("*/repodata.json"))}


def assert_consistent(channel: Path) -> None:
    """Every package a repodata.json promises is there with that exact sha256."""
    present = visible_packages(channel)
    for subdir, raw in repodata_bytes(channel).items():
        data = json.loads(raw)
        for key in ("packages", "packages.conda"):
            for name, record in (data.get(key) or {}).items():
                assert present.get(f"{subdir}/{name}") == record["sha256"], f"{subdir}/{name}"


def solve_from(channel: Path, cache: Path, cuda: str = "12.8", python: str = "3.12") -> list:
    """Solve vllm-pascal from `channel` alone for a Pascal box with this CUDA driver and Python."""
    from rattler import BuildString, GenericVirtualPackage, PackageName, Version, solve
    from rattler.repo_data.gateway import Gateway

    virtual = [
        GenericVirtualPackage(PackageName("__cuda"), Version(cuda), BuildString("0")),
        GenericVirtualPackage(PackageName("__linux"), Version("5.10"), BuildString("0")),
        GenericVirtualPackage(PackageName("__glibc"), Version("2.28"), BuildString("0")),
    ]
    return asyncio.run(
        solve(
            [channel.as_uri()],
            ["vllm-pascal"],
            gateway=Gateway(cache_dir=cache),
            platforms=[PLATFORM, "noarch"],
            virtual_packages=virtual,
            constraints=[f"cuda-version {cuda}.*", f"python {python}.*"],
        )
    )


def solve_and_install(channel: Path, tmp_path: Path) -> list[str]:
    """Solve from `channel` alone and install with py-rattler; return the installed files."""
    from rattler import install

    records = solve_from(channel, tmp_path / "repodata-cache")
    asyncio.run(install(records, tmp_path / "env", cache_dir=tmp_path / "pkgs", show_progress=False))
    return sorted(f"{r.subdir}/{r.file_name}" for r in records)


def test_http_mirror_indexes_solves_installs_and_a_second_run_fetches_nothing(
    source: Path, tmp_path: Path
) -> None:
    dest = tmp_path / "mirror"
    with serve_directory(source) as (url, server):
        first = mirror_channel(url, str(dest))
        assert len(first.fetched) == 10 and first.kept == 0
        assert visible_packages(dest) == visible_packages(source)
        assert repodata_bytes(dest) == repodata_bytes(source)

        server.requests.clear()
        second = mirror_channel(url, str(dest))
        assert second.fetched == [] and second.fetched_bytes == 0 and second.kept == 10
        assert not [r for r in server.requests if r.endswith(".conda")]

        # Twin: a damaged copy in the mirror is noticed and fetched again, and only that one.
        damaged = dest / PLATFORM / "pf-extra-2.0.0-hb0f4dca_0.conda"
        damaged.write_bytes(damaged.read_bytes() + b"junk")
        third = mirror_channel(url, str(dest))
        assert third.fetched == [f"{PLATFORM}/{damaged.name}"]
    assert visible_packages(dest) == visible_packages(source)

    # The mirror is a channel on its own: rattler indexes the very same records from its files...
    served = {s: json.loads(raw) for s, raw in repodata_bytes(dest).items()}
    index_channel(dest)
    for subdir, raw in repodata_bytes(dest).items():
        reindexed = json.loads(raw)["packages.conda"]
        assert {n: r["sha256"] for n, r in reindexed.items()} == {
            n: r["sha256"] for n, r in served[subdir]["packages.conda"].items()
        }
    # ...and an air-gapped machine solves and installs from it.
    installed = solve_and_install(dest, tmp_path)
    assert set(installed) == CLOSURE_SET
    marker = tmp_path / "env" / "share" / "pf-fixtures" / "vllm-pascal.txt"
    assert marker.read_text().strip() == "vllm-pascal cuda 12.8 python 3.12"


def test_verify_existing_rehashes_files_of_the_same_size(source: Path, tmp_path: Path) -> None:
    dest = tmp_path / "mirror"
    mirror_channel(str(source), str(dest))
    target = dest / "noarch" / "pf-common-1.0.0-h4616a5c_0.conda"
    data = bytearray(target.read_bytes())
    data[-1] ^= 0xFF
    target.write_bytes(bytes(data))
    # The quick check (size plus the sha256 the mirror's repodata promises) cannot see a flipped byte...
    assert mirror_channel(str(source), str(dest)).fetched == []
    # ...--verify-existing hashes every file and repairs it.
    repaired = mirror_channel(str(source), str(dest), verify_existing=True)
    assert repaired.fetched == [f"noarch/{target.name}"]
    assert_consistent(dest)


def test_s3_to_and_from_a_local_s3_server(source: Path, tmp_path: Path) -> None:
    with moto_s3(), serve_directory(source) as (url, _):
        s3_client().create_bucket(Bucket="pascal")
        first = mirror_channel(url, "s3://pascal/forge", staging=tmp_path / "staging")
        assert len(first.fetched) == 10
        keys = {o["Key"] for o in s3_client().list_objects_v2(Bucket="pascal")["Contents"]}
        assert {f"forge/{label}" for label in visible_packages(source)} | {
            "forge/linux-64/repodata.json",
            "forge/noarch/repodata.json",
        } == keys
        again = mirror_channel(url, "s3://pascal/forge", staging=tmp_path / "staging")
        assert again.fetched == [] and again.kept == 10

        # From S3 back to a directory: same bytes, and it installs.
        dest = tmp_path / "from-s3"
        back = mirror_channel("s3://pascal/forge", str(dest))
        assert len(back.fetched) == 10
    assert visible_packages(dest) == visible_packages(source)
    assert set(solve_and_install(dest, tmp_path)) == CLOSURE_SET


def test_s3_source_refuses_a_tampered_object(source: Path, tmp_path: Path) -> None:
    with moto_s3():
        s3_client().create_bucket(Bucket="pascal")
        upload_directory(source, "pascal", "forge")
        s3_client().put_object(
            Bucket="pascal", Key="forge/noarch/pf-common-1.0.0-h4616a5c_0.conda", Body=b"x"
        )
        dest = tmp_path / "mirror"
        with pytest.raises(MirrorError, match=r"noarch/pf-common-1\.0\.0-h4616a5c_0\.conda"):
            mirror_channel("s3://pascal/forge", str(dest))
    assert not (dest / "noarch" / "repodata.json").exists()
    assert "noarch/pf-common-1.0.0-h4616a5c_0.conda" not in visible_packages(dest)


def test_closure_mirrors_exactly_the_solved_set(source: Path, tmp_path: Path) -> None:
    dest = tmp_path / "closure"
    with serve_directory(source) as (url, _):
        report = mirror_channel(
            url, str(dest), closure=ClosureRequest(["vllm-pascal"], cuda="12.8", python="3.12")
        )
    # An independent solve against the source channel itself gives the same set.
    expected = solve_from(source, tmp_path / "cache")
    assert {f"{r.subdir}/{r.file_name}" for r in expected} == CLOSURE_SET
    assert set(visible_packages(dest)) == CLOSURE_SET == set(report.fetched)
    listed = {
        f"{subdir}/{name}"
        for subdir, raw in repodata_bytes(dest).items()
        for name in json.loads(raw)["packages.conda"]
    }
    assert listed == CLOSURE_SET
    assert set(solve_and_install(dest, tmp_path)) == CLOSURE_SET

    # Twin: another CUDA picks other builds, so the filter follows the request.
    other = tmp_path / "closure-124"
    mirror_channel(
        str(source), str(other), closure=ClosureRequest(["vllm-pascal"], cuda="12.4", python="3.11")
    )
    assert set(visible_packages(other)) == {
        f"{PLATFORM}/vllm-pascal-0.14.0-cuda124_py311_0.conda",
        f"{PLATFORM}/python-3.11.9-hf98ab0b_0.conda",
        "noarch/cuda-version-12.4-h3d414b0_0.conda",
        "noarch/pf-common-1.0.0-h4616a5c_0.conda",
    }


def split_channel(source: Path, keep: Callable[[str], bool], copy: Path) -> Path:
    """A channel with only the source's packages whose names `keep` accepts."""
    shutil.copytree(source, copy)
    for package in copy.glob("*/*.conda"):
        if not keep(package.name):
            package.unlink()
    index_channel(copy)
    return copy


def test_closure_with_a_dependency_channel_gives_a_mirror_that_installs_alone(
    source: Path, tmp_path: Path
) -> None:
    ours = ("vllm-pascal-", "cuda-version-")
    pascal = split_channel(source, lambda name: name.startswith(ours), tmp_path / "pascal")
    deps = split_channel(source, lambda name: not name.startswith(ours), tmp_path / "deps")
    request = ClosureRequest(["vllm-pascal"], cuda="12.8", python="3.12")
    dest = tmp_path / "closure"
    # Twin: the source alone lacks python and pf-common, and the error says what to add.
    with pytest.raises(PascalForgeError, match="--with"):
        mirror_channel(str(pascal), str(dest), closure=request)
    assert not dest.exists()

    with serve_directory(deps) as (deps_url, _):
        report = mirror_channel(pascal.as_uri(), str(dest), closure=request, with_channels=[deps_url])
    assert set(report.fetched) == set(visible_packages(dest)) == CLOSURE_SET
    assert set(solve_and_install(dest, tmp_path)) == CLOSURE_SET


# Downloads go through four 1 MiB buffers, hashed beside the download where a core is free for it
# (one job on two or more cores): 6 MiB makes the buffers go round.
BUFFERS_RECYCLED = 6 * 1024 * 1024


@pytest.mark.parametrize("beside", [False, True], ids=["inline", "beside"])
def test_the_download_digest_covers_every_byte_in_order(beside: bool) -> None:
    data = os.urandom(BUFFERS_RECYCLED + 12345)
    body = io.BytesIO(data)
    digest = hashlib.sha256()
    with _BackgroundDigest(digest, len(data), beside, depth=2) as hashing:
        while count := body.readinto(buffer := hashing.free_buffer()):
            hashing.update(buffer, count)
    assert digest.hexdigest() == hashlib.sha256(data).hexdigest()


def test_a_package_larger_than_the_download_buffers_arrives_intact(
    source: Path, good_mirror: tuple[Path, dict[str, bytes]]
) -> None:
    dest, _ = good_mirror
    big = grow(source, count=1, payload_bytes=BUFFERS_RECYCLED)[0]
    assert mirror_over_http(source, dest, jobs=1).fetched == [f"{PLATFORM}/{big.name}"]
    assert_consistent(dest)


def test_one_slow_download_does_not_hold_back_the_others(
    source: Path, good_mirror: tuple[Path, dict[str, bytes]]
) -> None:
    # The server holds the first body it is asked for until all the others went out. A run that
    # waits for a whole batch of downloads before starting the next stalls at each batch until the
    # hold gives up: 24 small files, two jobs, that is 8 stalls of 0.5 s, past the 3 s hold.
    dest, _ = good_mirror
    others = len(grow(source, count=25, payload_bytes=1024)) - 1
    with serve_directory(source, Misbehaviour(hold_first_until_served=others, hold_seconds=3)) as (
        url,
        server,
    ):
        report = mirror_channel(url, str(dest), jobs=2)
    assert len(report.fetched) == others + 1
    assert server.served[-1] == server.held, f"{server.held} went out before: {server.served}"
    assert_consistent(dest)


@pytest.mark.parametrize("payload_bytes", [256 * 1024, BUFFERS_RECYCLED], ids=["small", "buffers-recycled"])
def test_a_corrupted_package_is_refused_and_the_mirror_keeps_its_last_good_state(
    source: Path, good_mirror: tuple[Path, dict[str, bytes]], payload_bytes: int
) -> None:
    dest, before = good_mirror
    corrupted = grow(source, payload_bytes=payload_bytes)[1]
    data = bytearray(corrupted.read_bytes())
    data[len(data) * 3 // 4] ^= 0xFF
    corrupted.write_bytes(bytes(data))

    with serve_directory(source) as (url, _), pytest.raises(MirrorError) as error:
        mirror_channel(url, str(dest), jobs=1)
    assert f"{PLATFORM}/{corrupted.name}: sha256" in str(error.value)
    assert repodata_bytes(dest) == before
    assert f"{PLATFORM}/{corrupted.name}" not in visible_packages(dest)
    assert not list(dest.glob(f"*/.{corrupted.name}*"))
    assert_consistent(dest)


def test_a_full_disk_is_named_as_the_destinations_fault_not_a_cut_download(
    source: Path, good_mirror: tuple[Path, dict[str, bytes]]
) -> None:
    dest, before = good_mirror
    package = grow(source, count=1)[0]
    # The kernel refuses every write past RLIMIT_FSIZE (EFBIG), as a full disk refuses with ENOSPC.
    # (A link to /dev/full at the partial name no longer works: the mirror follows no planted link.)
    limit = package.stat().st_size // 4

    def small_disk() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    with serve_directory(source) as (url, _):
        run = subprocess.run(
            [sys.executable, "-m", "pascal_forge.cli", "mirror", url, str(dest)],
            capture_output=True,
            text=True,
            preexec_fn=small_disk,
            timeout=120,
        )
    assert run.returncode == 2, run.stderr
    partial = dest / PLATFORM / f".{package.name}.partial"
    assert "cannot write the destination" in run.stderr
    assert f"{partial}: File too large" in " ".join(run.stderr.split())
    assert "truncated" not in run.stderr
    assert repodata_bytes(dest) == before
    assert_consistent(dest)


def test_a_destination_that_cannot_be_a_directory_is_named(source: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(MirrorError) as error:
        mirror_channel(str(source), str(blocker / "mirror"))
    assert "cannot use the destination" in str(error.value)
    assert f"{blocker / 'mirror'}: [Errno 20] Not a directory" in str(error.value)


def test_a_truncated_download_is_refused_then_resumed(
    source: Path, good_mirror: tuple[Path, dict[str, bytes]]
) -> None:
    dest, before = good_mirror
    cut = grow(source, count=2, payload_bytes=1024 * 1024)[0]

    with serve_directory(source) as (url, server):
        server.truncate.add(cut.name)
        with pytest.raises(MirrorError) as error:
            mirror_channel(url, str(dest))
        assert f"{PLATFORM}/{cut.name}: got" in str(error.value) and "truncated" in str(error.value)
        assert repodata_bytes(dest) == before
        assert f"{PLATFORM}/{cut.name}" not in visible_packages(dest)
        assert_consistent(dest)

        server.truncate.clear()
        server.requests.clear()
        resumed = mirror_channel(url, str(dest))
    assert resumed.fetched == [f"{PLATFORM}/{cut.name}"]
    # Only the missing half travelled again.
    assert resumed.fetched_bytes == cut.stat().st_size - cut.stat().st_size // 2
    assert visible_packages(dest) == visible_packages(source)
    assert_consistent(dest)


@pytest.mark.parametrize(
    "name",
    [
        "../../evil-1.0-0.conda",
        "sub/evil-1.0-0.conda",
        "..\\evil-1.0-0.conda",
        ".hidden-1.0-0.conda",
        "evil.sh",
    ],
)
def test_path_traversal_names_are_refused_before_anything_is_fetched(
    source: Path, tmp_path: Path, good_mirror: tuple[Path, dict[str, bytes]], name: str
) -> None:
    dest, before = good_mirror
    grow(source, count=1)
    repodata_path = source / PLATFORM / "repodata.json"
    data = json.loads(repodata_path.read_text())
    good = next(iter(data["packages.conda"].values()))
    data["packages.conda"][name] = good
    repodata_path.write_text(json.dumps(data))

    with serve_directory(source) as (url, server), pytest.raises(MirrorError) as error:
        mirror_channel(url, str(dest))
    assert repr(name) in str(error.value)
    assert not [r for r in server.requests if r.endswith(".conda")]
    assert repodata_bytes(dest) == before
    assert not (tmp_path / "evil-1.0-0.conda").exists()


def test_safe_names_pass_the_name_check() -> None:
    assert unsafe_name_reason("vllm-pascal-0.14.0-cuda128_py312_0.conda") is None
    assert unsafe_name_reason("libtorch-2.9.1-cuda129_generic_h1_200.tar.bz2") is None
    assert unsafe_name_reason("a/b.conda") is not None


def test_repodata_that_does_not_parse_is_refused(
    source: Path, good_mirror: tuple[Path, dict[str, bytes]]
) -> None:
    dest, before = good_mirror
    (source / "noarch" / "repodata.json").write_text('{"packages.conda": {"x-1-0.conda": ')
    with pytest.raises(MirrorError, match=r"noarch/repodata\.json does not parse"):
        mirror_channel(str(source), str(dest))
    assert repodata_bytes(dest) == before


def partial_bytes(dest: Path) -> int:
    return sum(p.stat().st_size for p in dest.glob("*/.*.partial"))


def interrupt_mirror(url: str, dest: Path, how: signal.Signals) -> str:
    """Run `pascal-forge mirror` in its own process, signal it once new bytes arrive; return its stderr."""
    command = [sys.executable, "-m", "pascal_forge.cli", "mirror", url, str(dest), "--jobs", "2"]
    run = subprocess.Popen(
        command,
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        # A shell running the suite as a background job leaves SIGINT ignored in its children;
        # a user's terminal does not, and that is the case under test.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    start, deadline = partial_bytes(dest), time.monotonic() + 60
    while partial_bytes(dest) <= start:
        assert run.poll() is None and time.monotonic() < deadline, run.communicate()
        time.sleep(0.02)
    run.send_signal(how)
    _, err = run.communicate(timeout=60)
    assert run.returncode != 0
    return err


def test_an_interrupted_run_keeps_the_last_good_state_and_the_next_run_resumes(
    source: Path, good_mirror: tuple[Path, dict[str, bytes]]
) -> None:
    dest, before = good_mirror
    big = grow(source, count=3, payload_bytes=2 * 1024 * 1024)

    with serve_directory(source) as (url, server):
        server.seconds_per_chunk = 0.05
        # Ctrl-C: the run says which files it stopped in.
        err = interrupt_mirror(url, dest, signal.SIGINT)
        assert [p.name for p in big if f"{PLATFORM}/{p.name}: stopped mid-transfer" in err], err
        assert repodata_bytes(dest) == before
        assert_consistent(dest)
        # A hard kill (power cut, OOM killer) mid-transfer leaves no trace a reader could see either.
        interrupt_mirror(url, dest, signal.SIGKILL)
        assert repodata_bytes(dest) == before
        assert_consistent(dest)
        left = partial_bytes(dest)
        assert left > 0

        server.seconds_per_chunk = 0.0
        resumed = mirror_channel(url, str(dest))
    assert set(resumed.fetched) <= {f"{PLATFORM}/{p.name}" for p in big}
    # What the interrupted runs left in partial files is not fetched again.
    assert resumed.fetched_bytes <= sum(p.stat().st_size for p in big) - left
    assert visible_packages(dest) == visible_packages(source)
    assert_consistent(dest)
    assert partial_bytes(dest) == 0


def test_https_source_is_trusted_through_ssl_cert_file_and_the_ca_bundle_is_loaded_once(
    source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tls, ca = server_tls(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))
    loads = []
    load_default_certs = ssl.SSLContext.load_default_certs
    monkeypatch.setattr(
        ssl.SSLContext, "load_default_certs", lambda self, *a: loads.append(a) or load_default_certs(self, *a)
    )
    with serve_directory(source, tls=tls) as (url, _):
        report = mirror_channel(url, str(tmp_path / "mirror"))
    assert url.startswith("https://") and len(report.fetched) > 5
    assert visible_packages(tmp_path / "mirror") == visible_packages(source)
    # Loading the CA bundle costs 20 ms on a Debian machine: once a run, not once a connection.
    assert len(loads) == 1


def test_an_https_source_with_an_unknown_ca_is_refused_with_what_to_do(
    source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tls, _ = server_tls(tmp_path)
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    with serve_directory(source, tls=tls) as (url, _), pytest.raises(MirrorError) as error:
        mirror_channel(url, str(tmp_path / "mirror"))
    assert f"cannot read the source channel {url}" in str(error.value)
    assert "CERTIFICATE_VERIFY_FAILED" in str(error.value) and "set SSL_CERT_FILE" in str(error.value)
    assert not (tmp_path / "mirror").exists()


def test_cli_names_a_source_that_cannot_be_reached(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}"
    assert main(["mirror", url, str(tmp_path / "mirror")]) == 2
    err = capsys.readouterr().err
    assert f"cannot read the source channel {url}" in err and "Connection refused" in err
    assert "Traceback" not in err


def test_cli_mirror_prints_bytes_and_rate(
    source: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    with serve_directory(source) as (url, _):
        assert main(["mirror", url, str(tmp_path / "m"), "--subdir", "noarch"]) == 0
    out = capsys.readouterr().out
    assert "fetched 3 file(s)" in out and "/s" in out
    assert sorted(p.parent.name for p in (tmp_path / "m").glob("*/repodata.json")) == ["noarch"]


# ------------------------------------------------------------------ issue 17: hostile and unlucky runs


def records_of(channel: Path) -> dict[str, str]:
    """subdir/name -> sha256 of every record a reader of the channel's repodata.json finds."""
    return {
        f"{subdir}/{name}": record["sha256"]
        for subdir, raw in repodata_bytes(channel).items()
        for key in ("packages", "packages.conda")
        for name, record in (json.loads(raw).get(key) or {}).items()
    }


def replace_in_source(source: Path, label: str, extra: bytes) -> None:
    """Change a package's bytes under its own name and re-record it, as a careless channel does."""
    package = source / label
    package.write_bytes(package.read_bytes() + extra)
    repodata_path = package.parent / "repodata.json"
    data = json.loads(repodata_path.read_text())
    data["packages.conda"][package.name].update(sha256=sha256_of(package), size=package.stat().st_size)
    repodata_path.write_text(json.dumps(data))


REPLACED = f"{PLATFORM}/pf-extra-2.0.0-hb0f4dca_0.conda"


def test_a_mirror_update_frozen_at_every_file_step_never_shows_a_reader_a_wrong_file(
    source: Path, good_mirror: tuple[Path, dict[str, bytes]], tmp_path: Path
) -> None:
    """The run is frozen (SIGSTOP) before each file operation in turn; while it is frozen every record
    a reader finds must match its file and be the old or the new one; then it is killed (SIGKILL),
    and the next run must reach the new state."""
    old_mirror, _ = good_mirror
    old = records_of(old_mirror)
    grow(source, count=2, payload_bytes=64 * 1024)
    replace_in_source(source, REPLACED, b"second build, same name")
    new = records_of(source)
    assert new[REPLACED] != old[REPLACED]
    support = Path(__file__).parent / "support" / "mirror.py"
    steps_seen = 0
    with serve_directory(source) as (url, _):
        for step in range(1, 200):
            dest = tmp_path / f"step-{step}"
            shutil.copytree(old_mirror, dest)
            log = tmp_path / f"step-{step}.log"
            with open(log, "w") as err:
                run = subprocess.Popen(
                    [
                        sys.executable,
                        str(support),
                        "freeze-at",
                        str(step),
                        str(dest),
                        "mirror",
                        url,
                        str(dest),
                        "--jobs",
                        "1",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=err,
                )
                _, status = os.waitpid(run.pid, os.WUNTRACED)
            if not os.WIFSTOPPED(status):
                run.returncode = os.waitstatus_to_exitcode(status)
                assert run.returncode == 0, log.read_text()
                assert records_of(dest) == new
                assert_consistent(dest)
                break
            steps_seen = step
            # What a reader sees while the run stands still before this step:
            seen = records_of(dest)
            assert all(seen[label] in (old.get(label), new.get(label)) for label in seen), log.read_text()
            assert_consistent(dest)
            run.kill()
            run.wait()
            # A kill at this step leaves the same, and the next run completes the update.
            assert_consistent(dest)
            mirror_channel(url, str(dest))
            assert records_of(dest) == new
            assert_consistent(dest)
            shutil.rmtree(dest)
    # The lock, three partial files, two renames, the index swaps: the freeze visited each of them.
    assert steps_seen >= 10


def test_two_runs_at_once_the_second_names_the_first_and_nothing_is_corrupted(
    source: Path, good_mirror: tuple[Path, dict[str, bytes]]
) -> None:
    dest, before = good_mirror
    grow(source, count=2, payload_bytes=2 * 1024 * 1024)
    command = [sys.executable, "-m", "pascal_forge.cli", "mirror"]
    with serve_directory(source) as (url, server):
        server.seconds_per_chunk = 0.05
        first = subprocess.Popen([*command, url, str(dest)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while partial_bytes(dest) == 0:
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()
            time.sleep(0.02)
        # The second run (cron overlapping a manual one) is turned away, naming the first.
        with pytest.raises(MirrorError) as error:
            mirror_channel(url, str(dest))
        assert f"PID {first.pid}" in str(error.value), str(error.value)
        assert repodata_bytes(dest) == before
        server.seconds_per_chunk = 0.0
        _, err = first.communicate(timeout=120)
        assert first.returncode == 0, err
        # Once the first is done, the next run finds nothing left to do.
        assert mirror_channel(url, str(dest)).fetched == []
    assert visible_packages(dest) == visible_packages(source)
    assert_consistent(dest)


@pytest.mark.parametrize("victim_exists", [False, True], ids=["dangling-link", "link-to-a-file"])
def test_a_link_planted_at_a_partial_or_package_name_is_never_written_through(
    source: Path, good_mirror: tuple[Path, dict[str, bytes]], tmp_path: Path, victim_exists: bool
) -> None:
    dest, _ = good_mirror
    first, second = grow(source, count=2)
    outside = tmp_path / "outside"
    outside.mkdir()
    victims = [outside / "partial-victim", outside / "package-victim"]
    if victim_exists:
        for victim in victims:
            victim.write_bytes(b"not the mirror's to touch")
    (dest / PLATFORM / f".{first.name}.partial").symlink_to(victims[0])
    (dest / PLATFORM / second.name).symlink_to(victims[1])
    with serve_directory(source) as (url, _):
        report = mirror_channel(url, str(dest))
    assert {f"{PLATFORM}/{first.name}", f"{PLATFORM}/{second.name}"} <= set(report.fetched)
    for victim in victims:
        assert victim.exists() == victim_exists
        if victim_exists:
            assert victim.read_bytes() == b"not the mirror's to touch"
    for package in (first, second):
        assert not (dest / PLATFORM / package.name).is_symlink()
    assert visible_packages(dest) == visible_packages(source)
    assert_consistent(dest)


@pytest.mark.parametrize("new_files", [1, 0], ids=["with-a-download", "index-only"])
def test_a_linked_subdir_is_refused_not_followed(
    source: Path, good_mirror: tuple[Path, dict[str, bytes]], tmp_path: Path, new_files: int
) -> None:
    dest, _ = good_mirror
    if new_files:
        grow(source, count=new_files)
    else:  # nothing to fetch, but a new index to write
        repodata_path = source / PLATFORM / "repodata.json"
        data = json.loads(repodata_path.read_text())
        data["removed"] = ["pf-old-0.1-0.conda"]
        repodata_path.write_text(json.dumps(data))
    elsewhere = tmp_path / "elsewhere"
    shutil.move(dest / PLATFORM, elsewhere)
    (dest / PLATFORM).symlink_to(elsewhere)
    before = sorted(p.name for p in elsewhere.iterdir())
    with serve_directory(source) as (url, _), pytest.raises(MirrorError, match="follows no link"):
        mirror_channel(url, str(dest))
    assert sorted(p.name for p in elsewhere.iterdir()) == before


def test_markup_and_terminal_escapes_from_a_server_are_printed_literally(
    source: Path, tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    reason = "[/oops] [link=https://evil.example]click[/link] \x1b[2J\x1b]0;owned\x07"
    with serve_directory(source, Misbehaviour(status={"channeldata.json": (500, reason)})) as (url, _):
        assert main(["mirror", url, str(tmp_path / "m")]) == 2
    err = capfd.readouterr().err
    assert "[/oops] [link=https://evil.example]click[/link]" in err
    assert "\x1b" not in err and "\x07" not in err and "Traceback" not in err


def test_a_file_name_with_markup_is_printed_literally(
    source: Path, good_mirror: tuple[Path, dict[str, bytes]], capfd: pytest.CaptureFixture
) -> None:
    dest, _ = good_mirror
    repodata_path = source / "noarch" / "repodata.json"
    data = json.loads(repodata_path.read_text())
    data["packages.conda"]["x[/b]-1-0.conda"] = next(iter(data["packages.conda"].values()))
    repodata_path.write_text(json.dumps(data))
    assert main(["mirror", str(source), str(dest)]) == 2
    err = capfd.readouterr().err
    assert "x[/b]-1-0.conda" in err and "Traceback" not in err


def nested(depth: int) -> str:
    return '{"packages": ' + "[" * depth + "]" * depth + "}"


def test_deeply_nested_repodata_and_channeldata_are_refused_in_one_line(
    source: Path, good_mirror: tuple[Path, dict[str, bytes]], capfd: pytest.CaptureFixture
) -> None:
    dest, before = good_mirror
    (source / "channeldata.json").write_text(nested(200_000))
    (source / "noarch" / "repodata.json").write_text(nested(200_000))
    with serve_directory(source) as (url, _):
        assert main(["mirror", url, str(dest)]) == 2
    err = capfd.readouterr().err
    assert "noarch/repodata.json does not parse as JSON (nested too deeply)" in err
    assert "Traceback" not in err
    assert repodata_bytes(dest) == before


TOKEN = "tk-0123456789abcdef"


def test_a_conda_token_in_the_source_url_is_never_printed(
    source: Path, tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    tokened = tmp_path / "served" / "t" / TOKEN / "channel"
    shutil.copytree(source, tokened)
    (tokened / "noarch" / "repodata.json").write_text("{")
    with serve_directory(tmp_path / "served") as (url, _):
        assert main(["mirror", f"{url}/t/{TOKEN}/channel", str(tmp_path / "m")]) == 2
    err = capfd.readouterr().err
    assert f"{url}/t/***/channel/noarch/repodata.json does not parse" in " ".join(err.split())
    assert TOKEN not in err


def test_user_and_password_in_the_source_url_authenticate_and_stay_with_that_host(
    source: Path, tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    import base64

    expected = "Basic " + base64.b64encode(b"mirror:s3cr3t-pw").decode()
    with (
        serve_directory(source) as (cdn_url, cdn),
        serve_directory(source, Misbehaviour(require_authorization=expected)) as (url, server),
    ):
        server.redirect_to = cdn_url  # packages live on another host, as behind a CDN
        credentialed = url.replace("http://", "http://mirror:s3cr3t-pw@")
        assert main(["mirror", credentialed, str(tmp_path / "m")]) == 0
        server.require_authorization = "Basic nothing-we-have"
        assert main(["mirror", credentialed, str(tmp_path / "m2")]) == 2
    assert visible_packages(tmp_path / "m") == visible_packages(source)
    assert all(auth == expected for _, auth in server.authorizations[:-1])
    assert cdn.authorizations and all(auth is None for _, auth in cdn.authorizations)
    output = capfd.readouterr()
    assert "s3cr3t-pw" not in output.out + output.err
    assert "listing its subdirs: HTTP 401 Unauthorized" in output.err


def test_an_index_past_the_size_cap_is_refused_before_it_is_read_whole(
    source: Path, good_mirror: tuple[Path, dict[str, bytes]]
) -> None:
    dest, before = good_mirror
    repodata_path = source / PLATFORM / "repodata.json"
    data = json.loads(repodata_path.read_text())
    data["padding"] = "x" * (3 << 20)
    repodata_path.write_text(json.dumps(data))
    with serve_directory(source) as (url, _), pytest.raises(MirrorError, match="larger than 1 MiB"):
        mirror_channel(url, str(dest), max_index_bytes=1 << 20)
    with pytest.raises(MirrorError, match="larger than 1 MiB"):
        mirror_channel(str(source), str(dest), max_index_bytes=1 << 20)
    assert repodata_bytes(dest) == before
    # The default cap leaves room for the largest real channel.
    assert mirror_channel(str(source), str(dest)).fetched == []


def add_record(source: Path, subdir: str, name: str, record: dict, key: str = "packages.conda") -> None:
    repodata_path = source / subdir / "repodata.json"
    data = json.loads(repodata_path.read_text())
    data.setdefault(key, {})[name] = record
    repodata_path.write_text(json.dumps(data))


def test_a_name_ending_in_a_newline_is_refused(
    source: Path, good_mirror: tuple[Path, dict[str, bytes]]
) -> None:
    dest, before = good_mirror
    existing = source / "noarch" / "pf-common-1.0.0-h4616a5c_0.conda"
    record = json.loads((source / "noarch" / "repodata.json").read_text())["packages.conda"][existing.name]
    add_record(source, "noarch", "pf-evil-1.0-0.conda\n", record)
    with pytest.raises(MirrorError, match=r"'pf-evil-1\.0-0\.conda\\n'"):
        mirror_channel(str(source), str(dest))
    assert repodata_bytes(dest) == before


def test_a_name_of_254_bytes_is_mirrored(source: Path, good_mirror: tuple[Path, dict[str, bytes]]) -> None:
    dest, _ = good_mirror
    existing = source / "noarch" / "pf-common-1.0.0-h4616a5c_0.conda"
    long_name = "pf-long-" + "x" * (254 - len("pf-long--1.0-0.conda")) + "-1.0-0.conda"
    assert len(long_name.encode()) == 254
    shutil.copyfile(existing, source / "noarch" / long_name)
    record = json.loads((source / "noarch" / "repodata.json").read_text())["packages.conda"][existing.name]
    add_record(source, "noarch", long_name, record)
    assert mirror_over_http(source, dest).fetched == [f"noarch/{long_name}"]
    assert_consistent(dest)


def test_one_name_in_both_package_lists_with_two_records_is_refused(
    source: Path, good_mirror: tuple[Path, dict[str, bytes]]
) -> None:
    dest, before = good_mirror
    name = "pf-common-1.0.0-h4616a5c_0.conda"
    record = dict(json.loads((source / "noarch" / "repodata.json").read_text())["packages.conda"][name])
    record["sha256"] = "0" * 64
    add_record(source, "noarch", name, record, key="packages")
    with pytest.raises(MirrorError, match=rf"noarch/{re.escape(name)}: listed in both"):
        mirror_channel(str(source), str(dest))
    assert repodata_bytes(dest) == before


def without_a_field(raw: bytes, field: str) -> bytes:
    data = json.loads(raw)
    del next(iter(data["packages.conda"].values()))[field]
    return json.dumps(data).encode()


@pytest.mark.parametrize(
    "damage",
    [
        lambda raw: raw.replace(b'"sha256":', b'"size":1,"sha256":', 1),
        lambda raw: raw.decode().encode("utf-16"),
        lambda raw: raw[:-1] + b',"x":NaN}',
        lambda raw: without_a_field(raw, "build"),
    ],
    ids=["duplicate-key", "utf-16", "nan", "record-without-build"],
)
def test_repodata_that_rattler_cannot_read_is_refused(
    source: Path, good_mirror: tuple[Path, dict[str, bytes]], damage: Callable[[bytes], bytes]
) -> None:
    dest, before = good_mirror
    repodata_path = source / "noarch" / "repodata.json"
    repodata_path.write_bytes(damage(repodata_path.read_bytes()))
    with pytest.raises(MirrorError, match=r"noarch/repodata\.json"):
        mirror_channel(str(source), str(dest))
    assert repodata_bytes(dest) == before


def test_a_server_that_forbids_what_it_lacks_is_probed_like_conda_does(source: Path, tmp_path: Path) -> None:
    with serve_directory(source, Misbehaviour(forbid_missing=True)) as (url, _):
        report = mirror_channel(url, str(tmp_path / "m"))
        assert report.subdirs == ["linux-64", "noarch"]
        # A subdir the user asks for by name is still an error, and the message says what to change.
        with pytest.raises(MirrorError, match="403.*leave it out of --subdir"):
            mirror_channel(url, str(tmp_path / "m"), subdirs=["osx-64"])
    assert visible_packages(tmp_path / "m") == visible_packages(source)


def test_a_closure_of_a_channel_with_noarch_alone_is_mirrored(source: Path, tmp_path: Path) -> None:
    shutil.rmtree(source / PLATFORM)
    report = mirror_channel(str(source), str(tmp_path / "m"), closure=ClosureRequest(["pf-common"]))
    assert report.fetched == ["noarch/pf-common-1.0.0-h4616a5c_0.conda"]
    assert_consistent(tmp_path / "m")
