"""heatd: cools the servers first, then sells their heat."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("heatd")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+source"
