"""FMM3D's Python interface over fmmloopy: ``import fmmloopy.fmm3d as fmm`` in place of
``import fmm3dpy as fmm`` (:mod:`fmmloopy.interfaces.fmm3d`; docs/fmm3d.md)."""

from fmmloopy.interfaces.fmm3d import (
    Output,
    comperr,
    em3ddir,
    emfmm3d,
    h3ddir,
    hfmm3d,
    keep_last_fmm,
    l3ddir,
    lfmm3d,
    st3ddir,
    stfmm3d,
)

__all__ = ["Output", "comperr", "em3ddir", "emfmm3d", "h3ddir", "hfmm3d", "keep_last_fmm",
           "l3ddir", "lfmm3d", "st3ddir", "stfmm3d"]
