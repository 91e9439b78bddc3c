"""Fixes for the defects of PyPI hprose 1.4.3 (see WIRE.md). Placeholder: filled in by the TCP work."""


def apply() -> None:
    """Patch hprose 1.4.3 once; calling it again does nothing."""
