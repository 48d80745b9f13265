"""Index a channel folder assembled from CI artifacts, so builds and installs see its packages.

Each job uploads only the package files it built; the job that downloads them writes the
repodata once for all of them with py-rattler's indexer.

Usage: python .ci/index-channel.py CHANNEL_DIR
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from rattler.index import index_fs


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    channel = Path(argv[0])
    if not channel.is_dir():
        print(f"index-channel: {channel} is not a folder; did the artifact download run?", file=sys.stderr)
        return 1
    # conda clients expect noarch/ in every channel, even one without noarch packages.
    (channel / "noarch").mkdir(exist_ok=True)
    asyncio.run(index_fs(channel, force=True, write_zst=False, write_shards=False))
    packages = sorted(p.relative_to(channel) for p in channel.glob("*/*.conda"))
    print(f"indexed {len(packages)} package(s) in {channel}")
    for package in packages:
        print(f"  {package}")
    return 0


if __name__ == "__main__":
    status = main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    # py-rattler's indexer threads can still be winding down when Python finalizes, which
    # crashed 3 of 8 runs here (SIGSEGV, or "PyGILState_Release ... finalizing"); the index
    # is complete by now, so leave without finalizing.
    os._exit(status)
