"""The tuning layer: recipes (loopy transforms per device class), the registry that
selects them, the building blocks recipes share, the race analysis that refuses unsafe ones and
the record of which recipe files are shipped."""
