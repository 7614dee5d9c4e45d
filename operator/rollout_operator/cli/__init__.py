"""`rolloutctl`: the command-line interface."""
