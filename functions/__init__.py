"""Worker functions: one sink or one transform each, listed in an explicit registry."""
