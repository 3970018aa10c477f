"""The Docker image and compose file (issue 19, C6), read as text: this machine has no Docker to
build them, and what they lack shows only on a GPU host, at the first job that needs it."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def _apt_packages(dockerfile: str) -> set[str]:
    installs = re.findall(r"apt-get install ([^&]*)", dockerfile.replace("\\\n", " "))
    return {word for line in installs for word in shlex.split(line) if not word.startswith("-")}


def _env(dockerfile: str) -> dict[str, str]:
    block = re.search(r"^ENV (.*?)(?:\n\n|\n[A-Z])", dockerfile.replace("\\\n", " "), re.S | re.M)
    assert block is not None
    return dict(pair.split("=", 1) for pair in shlex.split(block.group(1)))


def test_the_image_can_compile_and_keeps_compiled_kernels() -> None:
    # COMPILE=true: Triton builds a C launcher at run time with the system compiler against
    # the Python headers of the Python that runs torch (Ubuntu's python3 here).
    dockerfile = (REPO / "Dockerfile").read_text()
    assert {"python3", "python3-venv", "gcc", "libc6-dev", "python3-dev"} <= _apt_packages(dockerfile)
    env = _env(dockerfile)
    # Inductor's and Triton's caches live in the model-cache volume, so a restart reuses them.
    compose = yaml.safe_load((REPO / "compose.yaml").read_text())
    mounts = dict(volume.split(":")[::-1] for volume in compose["services"]["bot"]["volumes"])
    cache = env["HF_HOME"]
    assert cache in mounts
    for name in ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR"):
        assert env[name].startswith(cache + "/"), name


def test_the_container_may_open_nvenc() -> None:
    # NVENC needs the driver's `video` capability inside the container; without it ffmpeg
    # cannot open h264_nvenc and every clip falls back to libx264.
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "video" in _env(dockerfile)["NVIDIA_DRIVER_CAPABILITIES"].split(",")
    compose = yaml.safe_load((REPO / "compose.yaml").read_text())
    devices = compose["services"]["bot"]["deploy"]["resources"]["reservations"]["devices"]
    assert any({"gpu", "video"} <= set(device["capabilities"]) for device in devices)
