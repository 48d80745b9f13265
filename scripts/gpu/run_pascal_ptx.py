"""Run the sm_61 PTX that patched Triton emits on an NVIDIA GPU through the driver's JIT.

Usage on the GPU machine: `python run_pascal_ptx.py PTX_DIR` (PTX_DIR from make_pascal_ptx.py).
Needs numpy and cupy only. Every kernel runs on data with contention (many threads on one slot,
and 16-bit slots that share a 32-bit word) and is compared with a reference computed on the host.
Prints one line per kernel and exits 1 if any differs.
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

import cupy as cp
import numpy as np

DTYPES = {
    "fp16": np.float16,
    "bf16": np.uint16,
    "fp32": np.float32,
    "fp64": np.float64,
    "i16": np.int16,
    "u16": np.uint16,
    "i32": np.int32,
    "u32": np.uint32,
    "i64": np.int64,
    "u64": np.uint64,
}
SLOTS = 64
N = 8192
BLOCK = 128  # the BLOCK the suite compiles the atomic kernels with


class Kernel:
    def __init__(self, ptx_path: Path) -> None:
        ptx = ptx_path.read_text()
        entry = re.search(r"\.entry\s+(\w+)\s*\(([^)]*)\)", ptx, re.S)
        self.params = len([p for p in entry.group(2).split(",") if p.strip()])
        # Triton fixes the block size in the PTX (.reqntid num_warps * 32).
        self.threads = int(re.search(r"\.(?:reqntid|maxntid)\s+(\d+)", ptx).group(1))
        self.target = re.search(r"\.target\s+(\S+)", ptx).group(1)
        self.function = cp.RawModule(path=str(ptx_path)).get_function(entry.group(1))

    def __call__(self, grid: int, *args) -> None:
        # Triton appends hidden scratch pointers; these kernels use none.
        hidden = [np.uint64(0)] * (self.params - len(args))
        self.function((grid,), (self.threads,), (*args, *hidden), shared_mem=48 * 1024)
        cp.cuda.runtime.deviceSynchronize()


def check_rmw(kernel: Kernel, op: str, dtype: str) -> str:
    rng = np.random.default_rng(0)
    host_type = DTYPES[dtype]
    index = (np.arange(N) % SLOTS).astype(np.int32)
    if op == "add":
        values = np.ones(N, host_type)
        target = np.zeros(SLOTS, host_type)
    elif op in ("max", "min"):
        # Signed types mix signs: Triton's float max/min take different paths for each sign.
        low = 0 if dtype.startswith("u") else -1000
        values = rng.integers(low, 1000, N).astype(host_type)
        target = np.full(SLOTS, values[0], host_type)
    elif op == "xchg":
        values = np.arange(N).astype(host_type)
        target = np.full(SLOTS, -1 if dtype not in ("u32", "u64") else 0).astype(host_type)
    else:
        values = rng.integers(0, 2**31, N).astype(host_type)
        target = rng.integers(0, 2**31, SLOTS).astype(host_type)
    d_target, d_old = cp.asarray(target), cp.zeros(N, host_type)
    kernel(N // BLOCK, d_target, cp.asarray(index), cp.asarray(values), d_old, np.int32(N))
    final, old = d_target.get(), d_old.get()
    problems = []
    for slot in range(SLOTS):
        mine = values[index == slot]
        olds = old[index == slot]
        if op == "add":
            expect = target[slot] + len(mine)
            if not np.array_equal(np.sort(olds.astype(np.float64)), np.arange(len(mine), dtype=np.float64)):
                problems.append(f"slot {slot}: returned old values are not 0..{len(mine) - 1}")
        elif op == "max":
            expect = max(target[slot], mine.max())
        elif op == "min":
            expect = min(target[slot], mine.min())
        elif op == "xchg":
            # Every value is returned once by the next exchange, the last one stays in memory.
            seen = np.sort(np.concatenate([olds, [final[slot]]]))
            if not np.array_equal(seen, np.sort(np.concatenate([mine, [target[slot]]]))):
                problems.append(f"slot {slot}: exchanged values lost or duplicated")
            expect = final[slot]
        else:
            ufunc = {"and": np.bitwise_and, "or": np.bitwise_or, "xor": np.bitwise_xor}[op]
            expect = ufunc.reduce(np.concatenate([[target[slot]], mine]))
        if final[slot] != expect:
            problems.append(f"slot {slot}: {final[slot]} != {expect}")
    return "; ".join(problems[:3])


def check_cas(kernel: Kernel, dtype: str) -> str:
    host_type = DTYPES[dtype]
    bits = {2: np.uint16, 4: np.uint32, 8: np.uint64}[np.dtype(host_type).itemsize]
    index = (np.arange(N) % SLOTS).astype(np.int32)
    target = (np.arange(SLOTS) * 3 + 7).astype(bits).view(host_type)
    compare = target[index]
    values = (np.arange(N) + 1000).astype(bits).view(host_type)
    d_target, d_old = cp.asarray(target), cp.zeros(N, host_type)
    kernel(
        N // BLOCK, d_target, cp.asarray(index), cp.asarray(compare), cp.asarray(values), d_old, np.int32(N)
    )
    final, old = d_target.get().view(bits), d_old.get().view(bits)
    problems = []
    for slot in range(SLOTS):
        mask = index == slot
        winners = np.flatnonzero(mask & (old == target.view(bits)[slot]))
        if len(winners) != 1:
            problems.append(f"slot {slot}: {len(winners)} winners")
            continue
        if final[slot] != values.view(bits)[winners[0]]:
            problems.append(f"slot {slot}: memory does not hold the winner's value")
        losers = old[mask & (np.arange(N) != winners[0])]
        if not np.all(losers == final[slot]):
            problems.append(f"slot {slot}: a failed CAS returned a value other than the winner's")
    return "; ".join(problems[:3])


def check_scalar_add(kernel: Kernel, dtype: str) -> str:
    programs = 1000
    host_type = DTYPES[dtype]
    d_counter, d_old = cp.zeros(1, host_type), cp.zeros(programs, host_type)
    kernel(programs, d_counter, d_old)
    counter, old = d_counter.get(), d_old.get()
    if counter[0] != programs:
        return f"counter {counter[0]} != {programs}"
    if not np.array_equal(np.sort(old.astype(np.float64)), np.arange(programs, dtype=np.float64)):
        return "returned old values are not 0..999"
    return ""


def check_reduce(kernel: Kernel, op: str, dtype: str) -> str:
    rows, cols = 256, 1000
    x = np.random.default_rng(1).standard_normal((rows, cols)).astype(DTYPES[dtype])
    d_out = cp.zeros(rows, np.float32)
    kernel(rows, cp.asarray(x), d_out, np.int32(cols))
    reference = x.astype(np.float64).sum(axis=1) if op == "sum" else x.astype(np.float64).max(axis=1)
    error = float(np.abs(d_out.get() - reference).max())
    return "" if error < 1e-3 else f"max abs error {error}"


def check_softmax(kernel: Kernel) -> str:
    rows, cols = 512, 128
    x = np.random.default_rng(2).standard_normal((rows, cols)).astype(np.float32)
    d_out = cp.zeros((rows, cols), np.float32)
    kernel(rows // 8, cp.asarray(x), d_out, np.int32(rows), np.int32(cols))
    e = np.exp(x - x.max(axis=1, keepdims=True))
    error = float(np.abs(d_out.get() - e / e.sum(axis=1, keepdims=True)).max())
    return "" if error < 1e-5 else f"max abs error {error}"


def check_index_put(kernel: Kernel, dtype: str) -> str:
    n = 65536
    index = (np.arange(n) * 7 % SLOTS).astype(np.int64)
    values = np.full(n, 0.5, DTYPES[dtype])
    d_out = cp.zeros(SLOTS, DTYPES[dtype])
    kernel(n // 512, cp.asarray(index), cp.asarray(values), d_out, np.int32(n))
    expect = np.bincount(index, minlength=SLOTS) * 0.5
    return (
        "" if np.array_equal(d_out.get().astype(np.float64), expect) else f"{d_out.get()[:4]} != {expect[:4]}"
    )


def check(case: str, kernel: Kernel) -> str:
    name, _, args = case.partition("[")
    parts = args.rstrip("]").split(",")
    if name == "atomic_cas":
        return check_cas(kernel, parts[0])
    if name == "atomic_add_scalar":
        return check_scalar_add(kernel, parts[0])
    if name.startswith("atomic_"):
        return check_rmw(kernel, name.removeprefix("atomic_"), parts[0])
    if name == "reduce":
        return check_reduce(kernel, parts[0], parts[1])
    if name == "inductor_persistent_softmax":
        return check_softmax(kernel)
    if name == "inductor_index_put_atomic_add":
        return check_index_put(kernel, parts[0])
    raise SystemExit(f"no check for {case}")


def main(ptx_dir: Path) -> int:
    manifest = json.loads((ptx_dir / "manifest.json").read_text())
    device = cp.cuda.runtime.getDeviceProperties(0)
    print(
        f"device: {device['name'].decode()} (sm_{device['major']}{device['minor']}), "
        f"driver {cp.cuda.runtime.driverGetVersion()}, cupy {cp.__version__}, numpy {np.__version__}"
    )
    failures = 0
    for case, ptx_name in manifest.items():
        ptx_path = ptx_dir / ptx_name
        ptx_text = ptx_path.read_text()
        started = time.perf_counter()
        try:
            kernel = Kernel(ptx_path)
            problem = check(case, kernel)
        except Exception as exc:
            problem = f"{type(exc).__name__}: {exc}"
        seconds = time.perf_counter() - started
        membars = len(re.findall(r"\bmembar\.\w+", ptx_text))
        cas_loops = len(re.findall(r"\$pascal_atomic_\d+_retry:", ptx_text))
        status = "PASS" if not problem else "FAIL"
        failures += bool(problem)
        target = re.search(r"\.target\s+(\S+)", ptx_text).group(1)
        print(
            f"{status} {case:40s} ptx .target {target} "
            f"membar={membars} cas_loops={cas_loops} {seconds * 1000:7.1f} ms {problem}"
        )
    print(f"{len(manifest) - failures}/{len(manifest)} kernels match the host reference")
    twins_caught = run_twins(ptx_dir, manifest)
    return 1 if failures or not twins_caught else 0


def run_twins(ptx_dir: Path, manifest: dict[str, str]) -> bool:
    """The checks must be able to fail: the same CAS-loop kernels without their retry branch lose
    updates under contention, and each check has to say so."""
    caught = 0
    twins = [case for case, name in manifest.items() if "_retry:" in (ptx_dir / name).read_text()]
    for case in twins:
        broken = re.sub(r"@%pa_retry bra \S+;", "// retry removed", (ptx_dir / manifest[case]).read_text())
        path = ptx_dir / f"twin-{manifest[case]}"
        path.write_text(broken)
        try:
            problem = check(case, Kernel(path))
        except Exception as exc:
            problem = f"{type(exc).__name__}: {exc}"
        finally:
            path.unlink()
        caught += bool(problem)
        print(f"{'CAUGHT' if problem else 'MISSED'} twin without retry: {case:40s} {problem}")
    print(f"{caught}/{len(twins)} broken twins detected")
    return caught == len(twins)


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
