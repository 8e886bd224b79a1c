"""`lookalike`: the command line, a door onto the engine (parse, call, print)."""
