"""Shared fixtures. Test helper modules (loopback, photos, tiny_models, world) sit beside the
tests and are imported by name: tests/ is on sys.path (rootdir conftest, no __init__.py)."""

from loopback.fixtures import loopback_discord  # noqa: F401
