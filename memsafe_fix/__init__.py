"""memsafe-fix: apply the pytest-xdist memory-safety pattern to test files with LibCST."""

__version__ = "0.1.0"
