"""`auto`: the camera move without CUDA, else the fastest preset this GPU can run, preferring
what is already downloaded, in one log line saying why."""

from __future__ import annotations

import logging

import pytest

from contract import BackendOptions
from pipeline.backends import choose_auto, resolve_auto
from pipeline.memory import GIB, plan
from pipeline.memory.machine import Machine
from pipeline.presets import AUTO_ORDER


def test_the_fastest_preset_that_fits_wins_and_downloaded_ones_come_first() -> None:
    assert AUTO_ORDER[0] == "ltx-2b"
    nothing, online = (lambda preset: False), (lambda: True)
    card = Machine(24 * GIB, 64 * GIB)
    name, why = choose_auto(card, nothing, online)
    reason = plan("ltx-2b", vram_bytes=card.vram_bytes, ram_bytes=card.ram_bytes).reason
    assert name == "ltx-2b" and why == f"fastest preset for this machine ({reason}); downloads on first use"
    name, why = choose_auto(Machine(8 * GIB, 32 * GIB), nothing, online)
    assert name == "ltx-2b" and "offload" in why
    # Only the 13B is on disk and the card holds it: no download needed, so it is used.
    big = Machine(80 * GIB, 128 * GIB)
    name, why = choose_auto(big, lambda preset: preset.name == "ltx", online)
    reason = plan("ltx", vram_bytes=big.vram_bytes, ram_bytes=big.ram_bytes).reason
    assert (name, why) == ("ltx", f"fastest downloaded preset for this machine ({reason})")


def test_a_card_too_small_or_an_offline_box_without_weights_gets_the_camera_move() -> None:
    name, why = choose_auto(Machine(2 * GIB, 8 * GIB), lambda preset: True, lambda: True)
    assert name == "camera"
    assert why.startswith("no AI preset fits this machine (ltx-2b does not fit: needs at least ~")
    name, why = choose_auto(Machine(24 * GIB, 64 * GIB), lambda preset: False, lambda: False)
    assert name == "camera" and why.endswith("(to use ltx-2b: python -m pipeline download ltx-2b)")


def test_without_cuda_auto_is_the_camera_move_in_one_line(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="pipeline"):
        assert resolve_auto(BackendOptions(device="cpu")) == "camera"
    [line] = [r.getMessage() for r in caplog.records if "model auto" in r.getMessage()]
    assert line == "model auto -> camera (CPU device requested): camera moves, no AI"
