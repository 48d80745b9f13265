"""What the tests share: paths of this repository, builders of fixture channels and trees,
the expectations each test compares with, and the pytest fixtures conftest.py registers."""
