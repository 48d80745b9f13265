"""What the tests share: paths of this repository, builders of fixture channels and trees,
the expectations each test compares with, and the pytest fixtures conftest.py registers.

support/torch_gates.py runs as a script, which puts this folder first on its sys.path: no
module here may take the name of a package such a script imports (a support/triton.py made
torch's has_triton() import it instead of Triton)."""
