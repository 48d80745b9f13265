"""The Pascal proofs: Triton and vLLM kernels compiled for sm_60/sm_61, vLLM's engine built as a
P40/P100, the cost model and `pascal-forge bench`."""

from pathlib import Path

# The folder that holds the pascal_forge package: the children these checks start (each with
# its own triton or vLLM tree on sys.path) put it on PYTHONPATH to import their own half.
PACKAGE_ROOT = Path(__file__).resolve().parents[2]
