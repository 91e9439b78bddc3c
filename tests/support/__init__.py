"""Helpers shared by several test modules (import as ``tests.support.<module>``)."""
