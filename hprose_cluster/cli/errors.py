"""The two outcomes a subcommand may raise besides the library's own errors."""

from __future__ import annotations


class Failure(Exception):
    """A lookup or call that failed: one line on stderr, exit 1."""


class UsageError(Exception):
    """Bad input found after parsing (a domain, a URL): one line on stderr, exit 2."""
