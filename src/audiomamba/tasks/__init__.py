"""Tasks: what the command line runs (demo, train, evaluate, tag, export)."""
