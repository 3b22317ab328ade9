"""Jobs a user runs: thin Hydra wrappers over plain functions (``paradox <command>``)."""
