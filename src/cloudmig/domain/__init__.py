"""Pure data and rules: no I/O in this package."""
