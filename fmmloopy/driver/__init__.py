"""The driver: orders the kernel launches of one FMM evaluation and moves buffers."""
