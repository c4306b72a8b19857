"""The sha256 of every file the shipped recipes are made of, as checked by ``fmmloopy check``.

A recipe from ``transforms/`` is trusted by :class:`fmmloopy.Fmm` without first-use verification
only while all these files are byte for byte what was shipped (an edited copy is verified like a
user's recipe, see :func:`fmmloopy.verification.needs_verification`). ``tests/test_verification.py``
fails when a file changes and this table does not; it prints the new table.
"""

SHIPPED_SHA256 = {
    "transforms/__init__.py": "d0918dbfce907bb911a75535f3013d48ae1cbcf8a25c2cdab7965e607deba37e",
    "transforms/cpu.py": "bb47d421f8d6dea4e6f3a72d81f8fc5dd522fcdcd8d17951edef26e8bf4b88af",
    "transforms/generic.py": "686f1fb5a64f66a98981ebcf3aad295002a6bbaf34598486d7894c698266da87",
    "transforms/gpu.py": "08080867d5eaf22842052f6074e9289468c2a17d1cad131c233cb36594744b03",
    "transforms/sequential.py": "8b6d6e26b987eea8c48e7760cde399ebbc8fc04a8784517782f4453b5809cce4",
    "fmmloopy/transform_tools.py":
        "e8428f7f0bbbc5e0bc7e78bc62e6f34bad487f40a6b5e423a7eb3beb1ef13601",
}
