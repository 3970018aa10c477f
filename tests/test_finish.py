"""Smooth (RIFE 4.26) and Upscale 2× (Real-ESRGAN x2plus through spandrel): random weights in
the real architectures, saved in the formats they are published in and loaded by the same
code as the real files; clips made by the CLI and read back by a real decoder (PyAV)."""

# ruff: noqa: F811  (the stand-in hub fixture is imported from test_downloads)
from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import torch
from hub_server import HubServer
from photos import photo_path
from test_downloads import hub  # noqa: F401

from contract import (
    AnimateRequest,
    FinishUnavailable,
    InputError,
    JobSpec,
    ModelError,
    Progress,
)
from pipeline import finish as finish_module
from pipeline.cli import main
from pipeline.finish import RIFE, UPSCALER, FinishPlan, check, timeline, weights_path
from pipeline.finish.interpolate import interpolate_frames
from pipeline.finish.rife import PAD, IFNet, load_ifnet, pad_to, random_ifnet
from pipeline.finish.upscale import (
    load_upscaler,
    tiles,
    upscale_frames,
    x2plus_state_dict,
)

PHOTO = photo_path("chelsea")


@pytest.fixture(autouse=True)
def no_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """An empty hub cache, offline, and no local weight overrides: each test says what it has."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv(RIFE.env, raising=False)
    monkeypatch.delenv(UPSCALER.env, raising=False)


# --- the files as published ----------------------------------------------------------------------


def save_rife(net: IFNet, path: Path, layout: str) -> Path:
    """`net` as one of RIFE's publications: Practical-RIFE's ``flownet.pkl`` (a torch state dict
    saved from DistributedDataParallel, every key under ``module.``), a plain ``.pth``, or the
    ComfyUI safetensors conversion (``blocks.N.`` instead of ``blockN.``)."""
    state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    if layout == "pkl":
        torch.save({f"module.{k}": v for k, v in state.items()}, path)
    elif layout == "pth":
        torch.save(state, path)
    else:
        from safetensors.torch import save_file

        renamed = {}
        for key, value in state.items():
            head, _, rest = key.partition(".")
            renamed[f"blocks.{head[5:]}.{rest}" if head.startswith("block") else key] = value
        save_file(renamed, str(path))
    return path


def save_x2plus(path: Path, seed: int = 0) -> Path:
    """RealESRGAN_x2plus as published: the GitHub release's ``.pth`` holds basicsr's RRDBNet
    state dict under ``params_ema``; the hub's repackaging is a flat safetensors file."""
    state = x2plus_state_dict(seed)
    if path.suffix == ".pth":
        torch.save({"params_ema": state}, path)
    else:
        from safetensors.torch import save_file

        save_file(state, str(path))
    return path


@pytest.fixture(scope="module")
def rife_net() -> IFNet:
    return random_ifnet(seed=3)


@pytest.fixture(scope="module")
def rife_file(rife_net: IFNet, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_rife(rife_net, tmp_path_factory.mktemp("rife") / "flownet.pkl", "pkl")


@pytest.fixture(scope="module")
def x2plus_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_x2plus(tmp_path_factory.mktemp("esrgan") / "RealESRGAN_x2plus.pth")


def random_frames(count: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    # A moving picture: each frame shifts the last by a pixel.
    return np.stack([np.roll(base, i, axis=1) for i in range(count)])


# --- RIFE ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["pkl", "pth", "safetensors"])
def test_rife_loads_from_each_published_layout(layout: str, rife_net: IFNet, tmp_path: Path) -> None:
    path = save_rife(rife_net, tmp_path / f"rife.{layout}", layout)
    loaded = load_ifnet(path)
    assert loaded.shape == rife_net.shape
    assert loaded.shape.widths == (192, 128, 96, 64, 32) and loaded.shape.head == 4
    x0, x1 = torch.rand(1, 3, PAD, PAD), torch.rand(1, 3, PAD, PAD)
    t = torch.tensor([0.3])
    with torch.inference_mode():
        assert torch.equal(loaded(x0, x1, t), rife_net(x0, x1, t))


def test_a_file_that_is_not_rife_is_one_sentence(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    save_file({"conv.weight": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ModelError) as caught:  # ModelError
        load_ifnet(tmp_path / "other.safetensors")
    assert "not a RIFE 4.x model" in caught.value.message
    assert "python -m pipeline download rife" in caught.value.message


def test_timeline_doubles_or_reaches_a_rate_and_keeps_both_ends() -> None:
    positions, fps = timeline(5, 24, interpolate=2)
    assert positions == [0, 0.5, 1, 1.5, 2, 2.5, 3, 3.5, 4] and fps == 48
    positions, fps = timeline(121, 24, fps_out=60)
    assert fps == 60 and len(positions) == 301 and positions[0] == 0 and positions[-1] == 120
    positions, fps = timeline(11, 16, fps_out=48)  # a whole multiple: 3× exactly
    assert len(positions) == 31 and positions[3] == 1.0
    positions, fps = timeline(10, 24, fps_out=60)  # 9 gaps × 2.5 = 22.5 → 22 steps
    assert len(positions) == 23 and positions[-1] == 9
    with pytest.raises(InputError, match="already plays at 60 fps"):
        timeline(10, 60, fps_out=48)


def test_interpolated_frames_keep_the_originals(rife_file: Path) -> None:
    frames = random_frames(4, 40, 56)
    positions, _ = timeline(4, 8, interpolate=2)
    events: list[Progress] = []
    out = interpolate_frames(frames, positions, rife_file, emit=events.append)
    assert out.shape == (7, 40, 56, 3) and out.dtype == np.uint8
    assert np.array_equal(out[::2], frames)  # every original, the first and last included
    assert [e.step for e in events] == [0, 1, 2, 3] and {e.stage for e in events} == {"finish"}
    cheap = interpolate_frames(frames, positions, rife_file, flow_side=24)
    assert cheap.shape == out.shape and np.array_equal(cheap[::2], frames)
    # The network's in-between frame lies between its neighbours, not a copy of either.
    assert not np.array_equal(out[1], frames[0]) and not np.array_equal(out[1], frames[1])


def test_padding_repeats_the_edge() -> None:
    x = torch.rand(1, 3, 40, 70)
    padded = pad_to(x)
    assert padded.shape[-2:] == (64, 128)
    assert torch.equal(padded[..., :40, :70], x) and torch.equal(padded[..., 63, 127], x[..., 39, 69])


# --- Real-ESRGAN x2plus through spandrel -----------------------------------------------------------


def test_x2plus_loads_from_both_published_files(x2plus_file: Path, tmp_path: Path) -> None:
    hub_copy = save_x2plus(tmp_path / "RealESRGAN_x2plus.safetensors")
    from_release, from_hub = load_upscaler(x2plus_file), load_upscaler(hub_copy)
    for model in (from_release, from_hub):
        assert model.scale == 2 and model.architecture.name == "ESRGAN"
        assert "23nb" in model.tags and "unshuffle" in model.tags
    frames = random_frames(2, 16, 24)
    out = upscale_frames(frames, from_release)
    assert out.shape == (2, 32, 48, 3) and out.dtype == np.uint8
    assert np.array_equal(out, upscale_frames(frames, from_hub))


def test_a_4x_model_is_refused_for_2x(tmp_path: Path) -> None:
    state = x2plus_state_dict(blocks=1)
    state["conv_first.weight"] = state["conv_first.weight"][:, :3].contiguous()  # plain 4× RRDBNet input
    from safetensors.torch import save_file

    save_file(state, str(tmp_path / "x4.safetensors"))
    with pytest.raises(ModelError, match="needs a 2× image model"):
        load_upscaler(tmp_path / "x4.safetensors")


@pytest.mark.parametrize("size,tile,overlap", [(100, 40, 8), (40, 40, 8), (17, 64, 16), (95, 32, 16)])
def test_tiles_keep_every_pixel_once(size: int, tile: int, overlap: int) -> None:
    spans = list(tiles(size, tile, overlap))
    kept = [k for _, _, k0, k1 in spans for k in range(k0, k1)]
    assert kept == list(range(size))
    for read0, read1, keep0, keep1 in spans:
        assert read0 <= keep0 < keep1 <= read1 and read1 - read0 <= tile
        assert keep0 - read0 == min(keep0, min(overlap, tile // 4))


def test_tiled_upscale_has_the_size_of_the_whole(x2plus_file: Path) -> None:
    frames = random_frames(1, 20, 28)
    out = upscale_frames(frames, load_upscaler(x2plus_file), tile=16)
    assert out.shape == (1, 40, 56, 3)


# --- the CLI ---------------------------------------------------------------------------------------


def decoded(path: Path) -> tuple[np.ndarray, float]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(stream)])
        return frames, float(stream.average_rate)


CAMERA = ["--model", "camera", "--camera", "zoom_in", "--seed", "1", "--quiet"]


def test_cli_smooths_a_clip_to_twice_the_frames(
    rife_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    import pipeline.animate as animate_module

    monkeypatch.setenv(RIFE.env, str(rife_file))
    seen: list[tuple[np.ndarray, np.ndarray]] = []
    real_apply = animate_module.apply_finish

    def spy(frames: np.ndarray, *args, **kwargs):  # type: ignore[no-untyped-def]
        result = real_apply(frames, *args, **kwargs)
        seen.append((frames.copy(), result[0]))
        return result

    monkeypatch.setattr(animate_module, "apply_finish", spy)
    plain, smooth = tmp_path / "plain.mp4", tmp_path / "smooth.mp4"
    args = ["animate", str(PHOTO), *CAMERA, "--size", "64x48", "--duration", "1", "--fps", "8"]
    assert main([*args, "--out", str(plain)]) == 0, capsys.readouterr().err
    assert seen == []  # nothing asked, nothing done
    assert main([*args, "--interpolate", "2", "--out", str(smooth)]) == 0, capsys.readouterr().err
    before, fps_before = decoded(plain)
    after, fps_after = decoded(smooth)
    assert (len(before), fps_before) == (8, 8)
    assert (len(after), fps_after) == (15, 16) and after.shape[1:] == (48, 64, 3)
    # Before encoding: every rendered frame is in the smooth clip as it was, ends included.
    (rendered, finished), = seen
    assert len(rendered) == 8 and np.array_equal(finished[::2], rendered)
    # After: the decoded ends are those frames, within what H.264 at CRF 19 and 4:2:0 chroma
    # change in a 64×48 photo (a mean of 3-4 levels out of 255 here).
    for a, b in ((after[0], rendered[0]), (after[-1], rendered[-1])):
        assert np.abs(a.astype(int) - b.astype(int)).mean() < 6


def test_cli_smooths_to_a_target_rate(
    rife_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setenv(RIFE.env, str(rife_file))
    plain, out = tmp_path / "plain.mp4", tmp_path / "sixty.mp4"
    args = ["animate", str(PHOTO), *CAMERA, "--size", "48x32", "--duration", "0.5", "--fps", "24"]
    assert main([*args, "--out", str(plain)]) == 0, capsys.readouterr().err
    assert main([*args, "--fps-out", "60", "--out", str(out)]) == 0, capsys.readouterr().err
    count = len(decoded(plain)[0])
    frames, fps = decoded(out)
    assert fps == 60 and len(frames) == round((count - 1) * 60 / 24) + 1


def test_cli_upscales_within_the_byte_limit(
    x2plus_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setenv(UPSCALER.env, str(x2plus_file))
    out = tmp_path / "big.mp4"
    args = ["animate", str(PHOTO), *CAMERA, "--size", "32x24", "--duration", "0.25", "--fps", "8"]
    code = main([*args, "--upscale", "2", "--max-bytes", "20KB", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    frames, fps = decoded(out)
    assert frames.shape[1:] == (48, 64, 3) and fps == 8 and len(frames) == 2
    assert out.stat().st_size <= 20_000


@pytest.mark.parametrize("flag,name", [("--interpolate", "rife"), ("--upscale", "upscale")])
def test_cli_without_the_weights_is_one_line_and_exit_2(
    flag: str, name: str, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "never.mp4"
    args = ["animate", str(PHOTO), *CAMERA, "--size", "64x48", "--duration", "1", flag, "2"]
    assert main([*args, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("error: The ")
    assert f"python -m pipeline download {name}" in err
    assert not out.exists()


def test_cli_rejects_a_rate_and_a_factor_together(tmp_path: Path, capsys) -> None:
    args = ["animate", str(PHOTO), *CAMERA, "--interpolate", "2", "--fps-out", "48"]
    assert main(args) == 2
    assert capsys.readouterr().err.strip() == (
        "error: Choose either double the frames or a target frame rate, not both."
    )


def test_download_rife_and_upscale_from_the_hub(
    hub: HubServer, rife_net: IFNet, tmp_path: Path, capsys
) -> None:
    hub.add_repo(RIFE.repo_id, {
        RIFE.filename: save_rife(rife_net, tmp_path / "rife.safetensors", "safetensors").read_bytes(),
        "frame_interpolation/film_net_fp16.safetensors": b"\0" * 4096,
    })
    hub.add_repo(UPSCALER.repo_id, {
        UPSCALER.filename: save_x2plus(tmp_path / "x2.safetensors").read_bytes(),
        "RealESRGAN_x4plus.safetensors": b"\0" * 4096,
    })
    assert main(["download", "rife", "upscale", "--quiet"]) == 0, capsys.readouterr().err
    assert capsys.readouterr().out.splitlines() == ["rife: downloaded", "upscale: downloaded"]
    assert sorted(hub.fetched()) == sorted([(RIFE.repo_id, RIFE.filename), (UPSCALER.repo_id, UPSCALER.filename)])
    assert load_ifnet(weights_path(RIFE)).shape.widths == (192, 128, 96, 64, 32)
    assert load_upscaler(weights_path(UPSCALER)).scale == 2
    hub.reset_log()
    assert main(["download", "rife", "--quiet"]) == 0
    assert hub.fetched() == []


def test_a_delivered_clip_is_smoothed_without_a_new_render(
    rife_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    from pipeline.finish.clip import refinish

    monkeypatch.setenv(RIFE.env, str(rife_file))
    plain = tmp_path / "plain.mp4"
    args = ["animate", str(PHOTO), *CAMERA, "--size", "64x48", "--duration", "1", "--fps", "12"]
    assert main([*args, "--out", str(plain)]) == 0, capsys.readouterr().err
    before, _ = decoded(plain)
    result = refinish(plain.read_bytes(), FinishPlan(fps_out=48), seed=1, model="camera",
                      max_bytes=64_000, out_path=tmp_path / "smooth.mp4")
    after, fps = decoded(tmp_path / "smooth.mp4")
    assert (result.fps, result.frames, result.width) == (48, len(after), 64) and fps == 48
    assert len(after) == (len(before) - 1) * 4 + 1 and len(result.video) <= 64_000
    for a, b in ((after[0], before[0]), (after[-1], before[-1])):  # one more encode apart
        assert np.abs(a.astype(int) - b.astype(int)).mean() < 6


# --- refusing before the render ------------------------------------------------------------------


def test_a_cpu_too_slow_for_the_clip_is_refused_before_rendering(
    rife_file: Path, x2plus_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline.animate import animate
    from pipeline.backends import BackendOptions, load_backend

    monkeypatch.setenv(RIFE.env, str(rife_file))
    monkeypatch.setenv(UPSCALER.env, str(x2plus_file))
    monkeypatch.setattr(finish_module, "TRIVIAL_PIXELS", 0)  # time it, however small
    monkeypatch.setattr(finish_module, "CPU_BUDGET_PER_SECOND", 1e-9)
    backend = load_backend("camera", BackendOptions())
    rendered: list[bool] = []
    monkeypatch.setattr(backend, "render", lambda *a, **k: rendered.append(True))
    for asked, what in (({"interpolate": 2}, "Smoothing needs a GPU"), ({"upscale": 2}, "Upscaling needs a GPU")):
        request = AnimateRequest(
            image=PHOTO.read_bytes(), model="camera", width=64, height=48, duration=1, fps=8, **asked
        )
        with pytest.raises(FinishUnavailable, match=what) as caught:
            animate(request, backend)
        assert "\n" not in caught.value.message and caught.value.kind == "model"
    assert rendered == []


def test_check_says_how_each_finish_runs(rife_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(RIFE.env, str(rife_file))
    methods = check(FinishPlan(interpolate=2), frames=9, width=64, height=48, fps=8, device="cpu")
    assert methods["smooth"].device == "cpu" and methods["smooth"].flow_side is None
    # Slow for full size, in time at the proxy size: the motion is estimated small.
    monkeypatch.setattr(finish_module, "TRIVIAL_PIXELS", 0)
    from pipeline.finish import interpolate as interpolate_module

    monkeypatch.setattr(
        interpolate_module, "estimate_seconds",
        lambda made, w, h, flow_side=None: 1.0 if flow_side else 1e6,
    )
    methods = check(FinishPlan(interpolate=2), frames=121, width=1280, height=720, fps=24, device="cpu")
    assert methods["smooth"].flow_side == finish_module.PROXY_SIDE
    with pytest.raises(InputError, match="the most is 3840"):
        check(FinishPlan(upscale=2), frames=9, width=2048, height=1152, fps=24, device="cuda")


# --- the request ---------------------------------------------------------------------------------


def test_jobspec_finish_fields_validate_and_old_rows_load() -> None:
    old = JobSpec.from_dict({"model": "camera", "prompt": "hi", "duration": 2.0})
    assert (old.interpolate, old.fps_out, old.upscale) == (1, None, 1)
    spec = JobSpec(interpolate=2, upscale=2)
    assert JobSpec.from_dict(spec.to_dict()) == spec
    for bad, sentence in (
        ({"interpolate": 3}, "Smoothing can double the frames"),
        ({"fps_out": 50}, "Smoothing can reach 48 or 60 fps, not 50."),
        ({"upscale": 4}, "Upscaling can double the size"),
        ({"interpolate": 2, "fps_out": 60}, "either double the frames or a target frame rate"),
    ):
        with pytest.raises(InputError, match=sentence):
            JobSpec(**bad)


def test_models_says_what_finishing_costs_here(capsys) -> None:
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    smooth = next(line for line in lines if line.startswith("smooth 24→48 fps: "))
    upscale = next(line for line in lines if line.startswith("upscale 2×: "))
    assert "5 s of 1280×720" in smooth and "5 s of 1280×720" in upscale
    assert smooth.endswith("not downloaded (python -m pipeline download rife)")
    assert upscale.endswith("not downloaded (python -m pipeline download upscale)")


def test_the_camera_path_still_imports_no_torch() -> None:
    import subprocess
    import sys

    code = "import sys, pipeline.animate, pipeline.finish; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"

