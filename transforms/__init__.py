"""Transform recipes shipped with fmmloopy, one module per device class (docs/recipes.md).

``sequential`` is the reference every recipe is checked against; ``generic`` is the fallback for
any device; ``cpu`` tunes for CPU OpenCL devices (PoCL).
"""
