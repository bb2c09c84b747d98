"""The library's version (recorded in the files and checkpoints it writes)."""

__version__ = "0.1.0"
