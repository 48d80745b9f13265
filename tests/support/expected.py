"""What the configuration and the recipes are expected to say, written once for every test that expects it.

The product derives the arch list and the stacks from the config (recipes.variants.arch_list
and stacks). A test that took its expectation from that same config could not catch a wrong
one, so tests compare with these instead, and test_plan.py checks the config against them.
Facts about one upstream release's behaviour stay keyed by that release where they are used.
"""

from __future__ import annotations

from pascal_forge.recipes.variants import Stack

ARCH_LIST = "6.0;6.1"
CAPABILITIES = (60, 61)

SEED = Stack(vllm="0.14.0", pytorch="2.9.1", triton="3.6.0", torchvision="0.24.1", torchaudio="2.9.1")
CURRENT = Stack(vllm="0.34.0", pytorch="2.14.0", triton="3.8.0", torchvision="0.29.0", torchaudio="2.11.0")
STACKS = {"seed": SEED, "current": CURRENT}  # oldest first, as stacks() orders them
# Each stack's Pythons (the python column zipped with its versions).
PYTHONS = {"seed": ("3.10", "3.11", "3.12", "3.13"), "current": ("3.11", "3.12", "3.13", "3.14")}
# The outputs of a stack whose libraries use no Python C-API: one package per CUDA version.
PYTHON_INDEPENDENT = {"seed": (), "current": ("torchvision", "torchaudio")}
# Every package our recipes build (pascal_forge.recipes.recipe.shipped_names reads them from the
# recipes; test_solve.py holds the two equal).
SHIPPED_NAMES = frozenset(
    {"triton", "libtorch", "pytorch", "pytorch-gpu", "torchvision", "torchaudio", "vllm", "vllm-pascal"}
)
