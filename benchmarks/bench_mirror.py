"""Mirror throughput against a plain copy of the same files on loopback, and a 1,000-package mirror.

Run from the repository root: python benchmarks/bench_mirror.py [--big-files 24 --big-mib 16 --small 1000]

Packages are real .conda files assembled by rattler-build (random payload, stored uncompressed so
their size is what travels). A separate process serves them with Python's http.server on
127.0.0.1, so server and client do not share a GIL. Goals: mirror >= 80% of the plain copy's
rate; the 1,000-package time is reported (first run and the no-op second run).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from pascal_forge.mirror import mirror_channel
from pascal_forge.sources import sha256_of

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from mirror_support import PLATFORM, index_channel, synthesize_packages


@contextmanager
def http_server(root: Path) -> Iterator[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory"]
    command.append(str(root))
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait()


def plain_copy(url: str, names: list[str], dest: Path, jobs: int) -> None:
    """What `wget` of the same files does: GET and write, no checks, `jobs` at a time."""
    dest.mkdir(parents=True)

    def fetch(name: str) -> None:
        with urllib.request.urlopen(f"{url}/{PLATFORM}/{name}") as response, open(dest / name, "wb") as out:
            shutil.copyfileobj(response, out, 1 << 20)

    with ThreadPoolExecutor(jobs) as pool:
        list(pool.map(fetch, names))


def best_seconds(run: Callable[[Path], None], scratch: Path, repeat: int) -> float:
    timings = []
    for attempt in range(repeat):
        target = scratch / f"run-{attempt}"
        start = time.perf_counter()
        run(target)
        timings.append(time.perf_counter() - start)
        shutil.rmtree(target)
    return min(timings)


def copy_then_check(url: str, names: list[str], dest: Path, jobs: int) -> None:
    """The careful plain copy: download, then sha256 every file (what the mirror does in one pass)."""
    plain_copy(url, names, dest, jobs)
    for name in names:
        sha256_of(dest / name)


def throughput(scratch: Path, files: int, mib: int, jobs: int, repeat: int) -> None:
    channel = scratch / "big"
    packages = synthesize_packages(channel, files, mib * 1024 * 1024, prefix="pf-big")
    index_channel(channel)
    names = [p.name for p in packages]
    total = sum(p.stat().st_size for p in packages)
    print(f"throughput: {files} packages, {total / 1e6:.0f} MB in all, served by http.server on 127.0.0.1")
    mirror_label = f"pascal-forge mirror, {jobs} jobs"
    with http_server(channel) as url:
        rates = {}
        for label, run in (
            ("plain copy, 1 stream", lambda t: plain_copy(url, names, t, 1)),
            (f"plain copy, {jobs} streams", lambda t: plain_copy(url, names, t, jobs)),
            (f"plain copy, {jobs} streams, then sha256", lambda t: copy_then_check(url, names, t, jobs)),
            (mirror_label, lambda t: mirror_channel(url, str(t), jobs=jobs)),
        ):
            seconds = best_seconds(run, scratch, repeat)
            rates[label] = total / seconds
            print(f"  {label:40s} {seconds:6.2f} s  {total / seconds / 1e6:7.1f} MB/s (best of {repeat})")
    for label, rate in rates.items():
        if label != mirror_label:
            print(f"  mirror / {label}: {rates[mirror_label] / rate:.0%} (goal: >= 80%)")
    sample = os.urandom(64 * 1024 * 1024)
    start = time.perf_counter()
    hashlib.sha256(sample).hexdigest()
    hash_rate = len(sample) / (time.perf_counter() - start) / 1e6
    print(
        f"  for scale: sha256 runs at {hash_rate:.0f} MB/s on one core here, and this machine has "
        f"{os.cpu_count()} cores, one of them busy serving"
    )
    shutil.rmtree(channel)


def many_packages(scratch: Path, count: int, jobs: int) -> None:
    channel = scratch / "many"
    start = time.perf_counter()
    packages = synthesize_packages(channel, count, 2048, prefix="pf-small")
    index_channel(channel)
    made = time.perf_counter() - start
    total = sum(p.stat().st_size for p in packages)
    print(f"{count} packages ({total / 1e6:.1f} MB) assembled and indexed in {made:.1f} s")
    with http_server(channel) as url:
        dest = scratch / "many-mirror"
        first = mirror_channel(url, str(dest), jobs=jobs)
        second = mirror_channel(url, str(dest), jobs=jobs)
        timings = []
        for _ in range(3):
            shutil.rmtree(dest)
            timings.append(mirror_channel(url, str(dest), jobs=jobs).seconds)
    print(
        f"  mirror over HTTP: first run {first.seconds:.2f} s ({len(first.fetched)} files), "
        f"median of 3 more fresh runs {statistics.median(timings):.2f} s, "
        f"second (no-op) run {second.seconds:.2f} s ({len(second.fetched)} files fetched)"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--big-files", type=int, default=24)
    parser.add_argument("--big-mib", type=int, default=16)
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-mirror-") as scratch:
        throughput(Path(scratch), args.big_files, args.big_mib, args.jobs, args.repeat)
        many_packages(Path(scratch), args.small, args.jobs)


if __name__ == "__main__":
    main()
