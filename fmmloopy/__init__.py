"""fmmloopy: loopy kernels, transform recipes and a thin driver for the kernel-independent FMM."""

__version__ = "0.1.0"
