"""The execution layer: transformed kernels compiled and launched, their arguments from a
tree, the disk caches (generated kernels, precomputed operators) and memory accounting."""
