"""Static analysis with ``ast``: imports, test collection, mock usage, markers."""
