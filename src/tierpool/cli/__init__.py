"""The ``tierpool`` command line: thin click commands over the library."""

from tierpool.cli.commands import cli, main

__all__ = ["cli", "main"]
