"""heatd: cools the servers first, then sells their heat."""

# The one place the version is written: the wheel's metadata reads it from here
# (pyproject.toml, tool.setuptools.dynamic), so asking for it costs no metadata lookup.
__version__ = "0.1.0"
