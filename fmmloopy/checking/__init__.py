"""The checking layer: every transformed kernel against the sequential one on real trees
(``fmmloopy check``), on the Oclgrind simulator (``--memcheck``), and first-use verification of
recipes that are not shipped."""
