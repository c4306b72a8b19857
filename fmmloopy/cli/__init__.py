"""The ``fmmloopy`` command line (``check``, ``bench``, ``show``, ``recipes``, ``cache``)."""
