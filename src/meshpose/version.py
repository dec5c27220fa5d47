"""meshpose's version (one place: the package, the CLI and run folders read it here)."""

__version__ = "0.1.0"
