"""The error type of user mistakes on the command line."""

from __future__ import annotations


class CliError(Exception):
    """A mistake the user can fix (bad option, bad file); printed as one line, exit status 2."""
