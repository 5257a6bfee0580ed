"""The package version, kept in one place for setup.py and ``--version``."""

__version__ = "0.1.0"
