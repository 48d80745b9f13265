"""How our packages are told apart from conda-forge's: the mark in their build strings.

Standard library only: `pascal-forge bench` reads it on owners' machines, and the GPU harness
carries it.
"""

# Only our build strings carry it: conda-forge's are cuda<ver>_<blas>_py<ver>_h<hex>_<n>,
# cuda<ver>py<ver>h<hex>_<n> or cpu_..., and "pascal" has letters no hex hash holds.
OUR_BUILD_MARK = "_pascal_"


def is_ours(build: str) -> bool:
    return OUR_BUILD_MARK in build
