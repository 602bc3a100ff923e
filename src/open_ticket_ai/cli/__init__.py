"""The ``otai`` command: every click command, signal handling and logging set-up."""

from open_ticket_ai.cli.main import main

__all__ = ["main"]
