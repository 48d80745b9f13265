"""pascal-forge: build and ship a conda channel of triton, pytorch and vLLM for Pascal GPUs."""

__version__ = "0.1.0"
