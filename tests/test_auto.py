"""`auto`: the camera move without CUDA, else the fastest preset this GPU can run, preferring
what is already downloaded, in one log line saying why."""

from __future__ import annotations

import logging

import pytest

from contract import BackendOptions
from pipeline.backends import choose_auto, resolve_auto
from pipeline.presets import AUTO_ORDER, PRESETS


def test_the_fastest_preset_that_fits_wins_and_downloaded_ones_come_first() -> None:
    assert AUTO_ORDER[0] == "ltx-2b"
    nothing, online = (lambda preset: False), (lambda: True)
    name, why = choose_auto((20.0, 24.0), nothing, online)
    assert name == "ltx-2b" and "all on the GPU, 20 GiB free" in why and "downloads on first use" in why
    name, why = choose_auto((7.0, 8.0), nothing, online)
    assert name == "ltx-2b" and "group offload, 7 of 18 GiB free" in why
    # Only the 13B is on disk and the card holds it: no download needed, so it is used.
    name, why = choose_auto((70.0, 80.0), lambda preset: preset.name == "ltx", online)
    assert (name, why) == ("ltx", "fastest downloaded preset for this GPU (all on the GPU, 70 GiB free)")


def test_a_card_too_small_or_an_offline_box_without_weights_gets_the_camera_move() -> None:
    name, why = choose_auto((3.5, 4.0), lambda preset: True, lambda: True)
    assert name == "camera" and why == "no AI preset runs in 4 GiB of VRAM (the smallest needs 6)"
    name, why = choose_auto((20.0, 24.0), lambda preset: False, lambda: False)
    repo, file = PRESETS["ltx-2b"].single_file
    assert name == "camera" and f"huggingface-cli download {repo} {file}" in why


def test_without_cuda_auto_is_the_camera_move_in_one_line(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="pipeline"):
        assert resolve_auto(BackendOptions(device="cpu")) == "camera"
    [line] = [r.getMessage() for r in caplog.records if "model auto" in r.getMessage()]
    assert line == "model auto -> camera (CPU device requested): camera moves, no AI"
