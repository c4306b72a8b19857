"""Interfaces of other FMM libraries over fmmloopy's own API (:mod:`fmmloopy.api`): a user of
one switches by changing an import (:mod:`fmmloopy.interfaces.fmm3d`, also
:mod:`fmmloopy.fmm3d`)."""
