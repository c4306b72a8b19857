"""The sha256 of every file the shipped recipes are made of, as checked by ``fmmloopy check``.

A recipe from ``transforms/`` is trusted by :class:`fmmloopy.Fmm` without first-use verification
only while all these files are byte for byte what was shipped (an edited copy is verified like a
user's recipe, see :func:`fmmloopy.verification.needs_verification`). ``tests/test_verification.py``
fails when a file changes and this table does not; it prints the new table.
"""

SHIPPED_SHA256 = {
    "transforms/__init__.py": "a29ebfcbda8b229e7836878cfd8e4824854c8db211e01441339c6e3d901c325a",
    "transforms/cpu.py": "aed9daaaff48af3c3600397905c07e7960900377311ddedbdcb10915edb690ce",
    "transforms/generic.py": "686f1fb5a64f66a98981ebcf3aad295002a6bbaf34598486d7894c698266da87",
    "transforms/gpu.py": "08080867d5eaf22842052f6074e9289468c2a17d1cad131c233cb36594744b03",
    "transforms/sequential.py": "8b6d6e26b987eea8c48e7760cde399ebbc8fc04a8784517782f4453b5809cce4",
    "fmmloopy/transform_tools.py":
        "dd4df643224e2821ee02e6c7aded12b46b650792384cec1bd2efdc4a8f286930",
}
