"""The tree layer: the adaptive octree, its interaction lists (stored as CSR), the lists
the FMM evaluates with, nested sums and the exact coordinates the FMM works in. numpy only."""
