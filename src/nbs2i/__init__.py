"""nbs2i: build Git repositories of Jupyter notebooks into hardened images."""

# The one place the version is written: pyproject.toml reads it from here
# (hatch), and reading it needs no package metadata at start-up.
__version__ = "0.2.0"
