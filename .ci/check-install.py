"""Import the stack installed from the new channel and check what it says about itself.

Runs inside the environment CI created with `vllm-pascal`, so it needs only the standard
library. Each MODULE==VERSION must import and report exactly VERSION (a local suffix such
as +cu129 is allowed, 2.9.1a0+git... is not: pip check would then reject vLLM's pins).
With --cuda and --arch, torch must be built for that CUDA version and carry native code for
each architecture; that needs no GPU.

Usage: check-install.py [--cuda 12.9] [--arch "6.0;6.1"] MODULE==VERSION...
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import sys


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="import checks for the installed Pascal stack")
    parser.add_argument("--cuda", help="CUDA version torch must be built for, e.g. 12.9")
    parser.add_argument("--arch", help='architectures torch must carry, TORCH_CUDA_ARCH_LIST form: "6.0;6.1"')
    parser.add_argument("expected", nargs="+", metavar="MODULE==VERSION")
    args = parser.parse_args(argv)

    failures: list[str] = []
    modules = {}
    for spec in args.expected:
        name, _, version = spec.partition("==")
        if not version:
            parser.error(f"{spec!r}: expected MODULE==VERSION")
        try:
            module = importlib.import_module(name)
        except Exception as exc:  # any import-time failure is what this check is for
            failures.append(f"import {name} failed: {type(exc).__name__}: {exc}")
            continue
        modules[name] = module
        found = str(getattr(module, "__version__", ""))
        print(f"{name} {found} from {module.__file__}")
        if found.split("+")[0] != version:
            failures.append(f"{name} reports version {found!r}, expected {version}")
    if "vllm" in modules:
        failures += _check_vllm_distribution()
    if "torch" in modules:
        failures += _check_torch(modules["torch"], args.cuda, args.arch)

    for failure in failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    return 1 if failures else 0


def _check_vllm_distribution() -> list[str]:
    # A Python distribution renamed to anything but `vllm` breaks vLLM's platform detection.
    try:
        importlib.metadata.distribution("vllm")
    except importlib.metadata.PackageNotFoundError:
        return ["no Python distribution named 'vllm' is installed; vLLM's platform detection needs that name"]
    return []


def _check_torch(torch: object, cuda: str | None, arch: str | None) -> list[str]:
    failures = []
    built_for = torch.version.cuda  # type: ignore[attr-defined]
    print(f"torch built for CUDA {built_for}")
    if cuda and built_for != cuda:
        failures.append(f"torch is built for CUDA {built_for}, expected {cuda}")
    if arch:
        # get_arch_list() answers [] without a GPU; the compiled-in flags answer everywhere.
        flags = torch._C._cuda_getArchFlags().split()  # type: ignore[attr-defined]
        print(f"torch carries {' '.join(flags)}")
        wanted = [f"sm_{a.replace('.', '')}" for a in arch.split(";") if a]
        missing = [w for w in wanted if w not in flags]
        if missing:
            failures.append(f"torch carries no code for {', '.join(missing)} (it has {' '.join(flags)})")
    return failures


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
