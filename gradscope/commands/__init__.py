"""One module per command, named after it; each returns its result object (serialize.py prints it)."""
