"""The command line: app.py (the group and its one error path), options.py (what the commands
share) and one module per command."""

from llmcalc.cli.app import app, main

__all__ = ["app", "main"]
