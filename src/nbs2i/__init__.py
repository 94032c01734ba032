"""nbs2i: build Git repositories of Jupyter notebooks into hardened images."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("nbs2i")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"
