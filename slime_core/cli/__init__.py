"""The `slime` command line: `main` parses and dispatches (main.py), `args` holds the shared options,
`paper` the paper-configuration checks. Commands import their stages when they run."""
