"""The public API: :class:`fmmloopy.Fmm` and :func:`fmmloopy.evaluate`."""
