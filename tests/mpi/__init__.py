"""The distributed tests (a package: their conftest is ``mpi.conftest``, not the suite's)."""
