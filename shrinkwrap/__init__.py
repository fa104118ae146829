"""The `shrinkwrap` command (shrinkwrap/cli.py); `python -m shrinkwrap` runs it too."""
