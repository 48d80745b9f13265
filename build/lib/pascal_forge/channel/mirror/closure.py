"""Only what installing some specs needs: the set rattler's solver picks from the source."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

from ...errors import PascalForgeError
from ...rattler_run import run_rattler
from .model import REPODATA, ClosureRequest, SubdirIndex


def solve_closure(
    channels: Sequence[dict[str, SubdirIndex]], request: ClosureRequest
) -> set[tuple[int, str, str]]:
    """(channel, subdir, file name) of every package that installing the request needs, solved by
    rattler over the channels in priority order (strict: a name found in one hides the later ones)."""
    from rattler import BuildString, Channel, GenericVirtualPackage, PackageName, SparseRepoData, Version
    from rattler.exceptions import SolverError
    from rattler.solver import solve_with_sparse_repodata

    virtual = [
        ("__unix", "0", "0"),
        ("__linux", "5.10", "0"),
        ("__glibc", request.glibc, "0"),
        ("__archspec", "1", "x86_64"),
    ]
    if request.cuda:
        virtual.append(("__cuda", request.cuda, "0"))
    constraints = []
    if request.cuda:
        constraints.append(f"cuda-version {request.cuda}.*")
    if request.python:
        constraints.append(f"python {request.python}.*")
    with tempfile.TemporaryDirectory(prefix="pascal-forge-closure-") as scratch:
        sparse = []
        for origin, indexes in enumerate(channels):
            channel = Channel((Path(scratch) / str(origin)).as_uri())
            for subdir in (request.platform, "noarch"):
                if subdir in indexes:
                    path = Path(scratch) / str(origin) / subdir / REPODATA
                    path.parent.mkdir(parents=True)
                    path.write_bytes(indexes[subdir].raw)
                    sparse.append(SparseRepoData(channel, subdir, path))
        if not sparse:
            raise PascalForgeError(f"no channel has {request.platform} or noarch to solve the closure from")
        packages = [
            GenericVirtualPackage(PackageName(name), Version(version), BuildString(build))
            for name, version, build in virtual
        ]
        try:
            records = run_rattler(
                solve_with_sparse_repodata(
                    request.specs, sparse, virtual_packages=packages, constraints=constraints
                )
            )
        except SolverError as exc:
            raise PascalForgeError(
                f"cannot solve {' '.join(request.specs)} from the source"
                f"{' and the --with channels' if len(channels) > 1 else ''} (constraints: "
                f"{', '.join(constraints) or 'none'}): {exc}. A package from another channel (conda-forge) "
                "needs that channel passed with --with"
            ) from exc
        base = Path(scratch).as_uri()
    return {(int(r.url[len(base) + 1 :].split("/")[0]), r.subdir, r.file_name) for r in records}
