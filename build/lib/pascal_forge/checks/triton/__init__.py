"""The Pascal compile suite: Triton kernels compiled for sm_60/sm_61 with a CUDA 12 ptxas.

`suite` prepares a stock and a patched triton tree from the released wheel and runs the
kernels of `kernels` in a subprocess (both trees are importable as `triton`, so each run
gets its own interpreter); `runner` is that subprocess. Only `runner` and `kernels` import
triton.
"""
