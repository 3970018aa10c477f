"""Shared fixtures. Test helper modules (loopback, photos, tiny_models, world) sit beside the
tests and are imported by name: tests/ is on sys.path (rootdir conftest, no __init__.py)."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from loopback.fixtures import loopback_discord  # noqa: F401
from world import Gate, private_ray


@pytest.fixture(scope="module")
def ray_instance() -> Iterator[None]:
    """A private local Ray for one test module (never another Ray on this machine), shut
    down at the module's end. Modules that need it say
    ``pytestmark = pytest.mark.usefixtures("ray_instance")``."""
    with private_ray():
        yield


@pytest.fixture
def gate(tmp_path: Path) -> Gate:
    """Jobs wait at this gate (world.GatedCamera) until the test opens it."""
    return Gate(tmp_path / "gate")
