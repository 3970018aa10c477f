"""HALF_FRAMES: an AI model renders every other frame at half the rate and RIFE draws the rest.

The tiny LTX pipeline (random weights, loaded by the production loader) renders through the
CLI with random RIFE weights in the published layout; the clips are read back with PyAV.
Where RIFE cannot run at full size (no weights), the model renders every frame, as without
the setting: the speed-up never costs a job.
"""

# ruff: noqa: F811  (pytest fixtures imported from tiny_models)
from __future__ import annotations

import logging
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from photos import photo_path
from tiny_models import tiny_ltx_dir, tiny_wan_dir  # noqa: F401

from contract import AnimateRequest, BackendOptions
from pipeline.cli import main
from pipeline.finish import RIFE, FinishPlan
from pipeline.finish.rife import random_ifnet

PHOTO = photo_path("chelsea")


@pytest.fixture
def rife(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """RIFE as Practical-RIFE publishes it (``flownet.pkl``: a DDP state dict)."""
    path = tmp_path / "flownet.pkl"
    torch.save({f"module.{k}": v for k, v in random_ifnet(seed=3).state_dict().items()}, path)
    monkeypatch.setenv(RIFE.env, str(path))
    return path


def decoded(path: Path) -> tuple[np.ndarray, float]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(stream)]), float(stream.average_rate)


def args(model: Path, out: Path, *extra: str) -> list[str]:
    return ["animate", str(PHOTO), "--model", str(model), "--device", "cpu", "--size", "32x32",
            "--duration", "2", "--fps", "16", "--seed", "7", "--quiet", "--out", str(out), *extra]


def test_the_model_renders_half_the_frames_and_rife_draws_the_rest(
    tiny_ltx_dir: Path, rife: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture, capsys,
) -> None:
    import pipeline.animate as animate_module

    seen: list[tuple[np.ndarray, np.ndarray, float]] = []
    real_apply = animate_module.apply_finish

    def spy(frames: np.ndarray, fps: float, *rest, **kwargs):  # type: ignore[no-untyped-def]
        result = real_apply(frames, fps, *rest, **kwargs)
        seen.append((frames.copy(), result[0], fps))
        return result

    monkeypatch.setattr(animate_module, "apply_finish", spy)
    full, half = tmp_path / "full.mp4", tmp_path / "half.mp4"
    assert main(args(tiny_ltx_dir, full)) == 0, capsys.readouterr().err
    assert seen == []  # every frame rendered, nothing for RIFE
    with caplog.at_level(logging.WARNING, logger="pipeline"):
        assert main(args(tiny_ltx_dir, half, "--half-frames")) == 0, capsys.readouterr().err
    # 2 s at 16 fps on LTX's 8k+1 rule: 33 frames; at 8 fps the model draws 17 of them and
    # RIFE the 16 between, so the clip has the same frames, rate and length.
    (rendered, finished, rate), = seen
    assert (len(rendered), rate) == (17, 8)
    assert len(finished) == 33 and np.array_equal(finished[::2], rendered)
    (a, fps_a), (b, fps_b) = decoded(full), decoded(half)
    assert (a.shape, fps_a) == (b.shape, fps_b) == ((33, 32, 32, 3), 16)
    assert any("RIFE drew every other frame to make 16 fps" in m for m in caplog.messages)


def test_without_rife_every_frame_is_rendered(
    tiny_ltx_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog, capsys
) -> None:
    monkeypatch.delenv(RIFE.env, raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    out = tmp_path / "clip.mp4"
    with caplog.at_level(logging.INFO, logger="pipeline"):
        assert main(args(tiny_ltx_dir, out, "--half-frames")) == 0, capsys.readouterr().err
    frames, fps = decoded(out)
    assert (len(frames), fps) == (33, 16)
    assert any("HALF_FRAMES" in m and "renders every frame" in m for m in caplog.messages)


def test_the_plan_halves_only_fresh_clips_at_an_even_rate(tiny_ltx_dir: Path, rife: Path) -> None:
    from pipeline.backends.diffusion import DiffusionBackend

    on = DiffusionBackend(str(tiny_ltx_dir), options=BackendOptions(device="cpu", half_frames=True))
    off = DiffusionBackend(str(tiny_ltx_dir), options=BackendOptions(device="cpu"))
    ask = AnimateRequest(image=b"", prompt="", duration=2.0, fps=16, width=32, height=32, seed=1)
    halved, whole = on.plan(ask, (64, 64)), off.plan(ask, (64, 64))
    assert (halved.fps, halved.num_frames, halved.interpolated) == (8, 17, 2)
    assert (whole.fps, whole.num_frames, whole.interpolated) == (16, 33, 1)
    # An odd rate cannot be halved into whole frames; an extension keeps the clip's frames.
    assert on.plan(ask.replace(fps=25), (64, 64)).interpolated == 1
    assert on.plan(ask.replace(previous_clip=b"mp4"), (64, 64)).interpolated == 1
    # The member's own smoothing comes on top: twice the frames of the full rate.
    assert FinishPlan.of(ask.replace(interpolate=2), interpolated=2).interpolate == 4
    assert FinishPlan.of(ask.replace(fps_out=48), interpolated=2) == FinishPlan(fps_out=48)


def test_the_operator_setting_reaches_the_workers(tmp_path: Path) -> None:
    from bot.settings import Settings

    settings = Settings.load(env_file=None, discord_token="x" * 59 + "Q", half_frames=True,
                             database_path=tmp_path / "db", output_dir=tmp_path / "out")
    assert settings.jobs_config().backend.half_frames is True


def test_a_model_not_told_the_frame_rate_renders_every_frame(
    tiny_wan_dir: Path, rife: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Wan draws its frames at the spacing it was trained on: half of them, doubled by RIFE,
    would play in slow motion, so HALF_FRAMES leaves it alone."""
    from pipeline.backends.diffusion import DiffusionBackend

    backend = DiffusionBackend(str(tiny_wan_dir), options=BackendOptions(device="cpu", half_frames=True))
    ask = AnimateRequest(image=b"", prompt="", duration=2.0, fps=16, width=32, height=32, seed=1)
    with caplog.at_level(logging.INFO, logger="pipeline"):
        plan = backend.plan(ask, (64, 64))
    assert (plan.fps, plan.interpolated) == (16, 1)
    assert any("not told the frame rate" in m for m in caplog.messages)
