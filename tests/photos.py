"""The shared sample photos (../shared/photos beside the repository, or $ANIMATE_SHARED_PHOTOS).

Tests use real photographs rather than synthetic noise: camera-move smoothness and intake are
only meaningful on real image statistics.
"""

from __future__ import annotations

import os
from pathlib import Path

NAMES = ("astronaut", "chelsea", "coffee")


def photos_dir() -> Path:
    override = os.environ.get("ANIMATE_SHARED_PHOTOS")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[1].parent / "shared" / "photos"


def photo_path(name: str) -> Path:
    path = photos_dir() / f"{name}.png"
    if not path.is_file():
        raise FileNotFoundError(
            f"sample photo {path} is missing; set ANIMATE_SHARED_PHOTOS to the photos folder"
        )
    return path


def photo_bytes(name: str) -> bytes:
    return photo_path(name).read_bytes()
