"""Checks of user input at the public API, with errors that say what is wrong."""

from __future__ import annotations

import numpy as np


def validate_charges(charges, nsources: int) -> np.ndarray:
    """``charges`` as float64 of shape ``(nsources,)``, or a ValueError that says what is wrong."""
    charges = np.asarray(charges)
    if charges.dtype.kind not in "fiu":
        raise ValueError(f"charges must be real numbers, got dtype {charges.dtype}")
    if charges.shape != (nsources,):
        raise ValueError(f"charges must have shape ({nsources},), one per source; "
                         f"got {charges.shape}")
    charges = charges.astype(np.float64, copy=False)
    if not np.all(np.isfinite(charges)):
        raise ValueError("charges contain NaN or inf")
    return charges
