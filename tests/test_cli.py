"""``python -m pipeline``: real MP4s from tiny models, read back by a real decoder (PyAV), and
one-line errors for everything a user can get wrong."""

# ruff: noqa: F811  (pytest fixtures imported from tiny_models are "redefined" as arguments)
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402
from tiny_models import (  # noqa: E402,F401  (session fixtures; see tiny_models.py)
    tiny_ltx_dir,
    tiny_model_dir,
    tiny_model_dirs,
    tiny_svd_dir,
    tiny_wan_a14b_dir,
)

from pipeline.cli import main  # noqa: E402
from pipeline.presets import PRESETS  # noqa: E402
from pipeline.probe import probe  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
FAST = ["--size", "64x64", "--steps", "2", "--duration", "1", "--fps", "8", "--seed", "7"]
EXPECTED = {
    # kind: (width, height, frames) for FAST: 1 s at 8 fps on each family's frame rule
    "ltx": (64, 64, 9),  # 8k+1
    "wan": (64, 64, 17),  # 4k+1, at least the preset's 17
    "wan_a14b": (64, 64, 17),
    "wan_ti2v": (64, 64, 17),
    "svd": (64, 64, 14),  # SVD-XT: 14..25 frames
    "cogvideox": (32, 32, 49),  # fixed size and length (learned positional embeddings)
}
LOOPED = {
    # --loop: models that end on an image end on the photo (same frames as without); the rest
    # render half a second more (1.5 s, on their frame rule) and lose 0.5 s (4 frames, at most a
    # third) to the dissolve of the end into the start
    "ltx": 9,
    "wan": 17 - 4,  # Wan 2.1 with a CLIP encoder: no last-frame conditioning
    "wan_a14b": 17,
    "wan_ti2v": 17 - 4,  # expand_timesteps ignores last_image
    "svd": 14 - 4,
    "cogvideox": 49 - 4,
}


@pytest.fixture(scope="module")
def photo_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("photos") / "cat photo.png"
    x = np.linspace(0, 255, 120, dtype=np.float32)[None, :, None]
    y = np.linspace(0, 255, 80, dtype=np.float32)[:, None, None]
    Image.fromarray(
        np.concatenate([x + 0 * y, y + 0 * x, (x + y) / 2], axis=2).astype(np.uint8)
    ).save(path)
    return path


def offline_env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf-home"), PYTHONPATH=str(REPO))
    env.pop("HF_HUB_CACHE", None)
    return env


def assert_clip(path: Path, width: int, height: int, frames: int, fps: float) -> dict:
    info = probe(path)
    assert info["codec"] == "h264"
    assert info["pix_fmt"] == "yuv420p"
    assert (info["width"], info["height"]) == (width, height)
    assert info["frames"] == frames
    assert info["fps"] == pytest.approx(fps)
    assert info["faststart"], info["boxes"]  # moov before mdat
    return info


def one_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    assert len(lines) == 1, text
    assert "Traceback" not in text
    return lines[0]


@pytest.mark.parametrize("kind", list(EXPECTED))
def test_animate_each_tiny_model_in_process(
    kind, tiny_model_dirs, photo_path, tmp_path, capsys
) -> None:
    out = tmp_path / f"{kind}.mp4"
    code = main(
        [
            "animate",
            str(photo_path),
            "--model",
            str(tiny_model_dirs[kind]),
            *FAST,
            "--prompt",
            "a cat",
            "--camera",
            "zoom_in",
            "--out",
            str(out),
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert captured.out.strip() == str(out)
    width, height, frames = EXPECTED[kind]
    info = assert_clip(out, width, height, frames, 8)
    assert info["metadata"].get("seed") == "7" or "seed=7" in info["metadata"].get("comment", "")
    assert "denoise" in captured.err and "100%" in captured.err  # the progress bar, on stderr


@pytest.mark.parametrize("kind", list(EXPECTED))
def test_animate_subprocess_real_cli(kind, tiny_model_dirs, photo_path, tmp_path) -> None:
    out = tmp_path / "sub.mp4"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline",
            "animate",
            str(photo_path),
            "--model",
            str(tiny_model_dirs[kind]),
            *FAST,
            "--camera",
            "pan_left",
            "--motion",
            "8",
            "--loop",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=offline_env(tmp_path),
        timeout=240,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{out}\n"
    assert "Traceback" not in result.stderr
    width, height, _ = EXPECTED[kind]
    assert_clip(out, width, height, LOOPED[kind], 8)


def test_ctrl_c_cancels_between_steps(
    tiny_ltx_dir, photo_path, tmp_path, monkeypatch, capsys
) -> None:
    import signal

    import pipeline.cli as cli

    class InterruptingBar(cli._ProgressBar):
        def __call__(self, progress):
            super().__call__(progress)
            if progress.stage == "denoise" and progress.step == 1:
                signal.raise_signal(signal.SIGINT)  # what the terminal sends on Ctrl-C

    monkeypatch.setattr(cli, "_ProgressBar", InterruptingBar)
    out = tmp_path / "never.mp4"
    before = signal.getsignal(signal.SIGINT)
    code = main(
        [
            "animate",
            str(photo_path),
            "--model",
            str(tiny_ltx_dir),
            *FAST,
            "--steps",
            "4",
            "--out",
            str(out),
        ]
    )
    captured = capsys.readouterr()
    assert (
        code == 130 and captured.err.strip().splitlines()[-1] == "Cancelled." and captured.out == ""
    )
    assert not out.exists()
    assert signal.getsignal(signal.SIGINT) is before  # handler restored


def test_default_output_name_is_stem_model_seed(
    tiny_svd_dir, photo_path, tmp_path, monkeypatch, capsys
) -> None:
    monkeypatch.chdir(tmp_path)
    code = main(["animate", str(photo_path), "--model", str(tiny_svd_dir), *FAST, "--quiet"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    expected = tmp_path / f"cat_photo-{tiny_svd_dir.name}-7.mp4"
    assert captured.out.strip() == str(expected) and expected.is_file()
    assert captured.err == "" or "note:" in captured.err  # --quiet: no bar


def test_end_image_and_byte_limit(tiny_wan_a14b_dir, photo_path, tmp_path, capsys) -> None:
    end = tmp_path / "end.png"
    Image.new("RGB", (120, 80), (200, 30, 30)).save(end)
    out = tmp_path / "flf.mp4"
    code = main(
        [
            "animate",
            str(photo_path),
            "--model",
            str(tiny_wan_a14b_dir),
            *FAST,
            "--end-image",
            str(end),
            "--max-bytes",
            "64KB",
            "--out",
            str(out),
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert out.stat().st_size <= 64_000
    assert_clip(out, 64, 64, 17, 8)


def test_sizes_follow_the_family_rules(tiny_ltx_dir, photo_path, tmp_path, capsys) -> None:
    out = tmp_path / "odd.mp4"
    code = main(
        [
            "animate",
            str(photo_path),
            "--model",
            str(tiny_ltx_dir),
            "--size",
            "100x60",
            "--steps",
            "1",
            "--duration",
            "1.1",
            "--fps",
            "10",
            "--out",
            str(out),
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert_clip(out, 96, 64, 9, 10)  # x32 and 8k+1


# --- errors: exit 2, one line, no traceback, no file ------------------------------------------


def run_error(argv: list[str], capsys, code: int = 2) -> str:
    result = main(argv)
    captured = capsys.readouterr()
    assert result == code, captured.err
    assert captured.out == ""
    return one_line(captured.err)


def test_bad_model_path(photo_path, tmp_path, capsys) -> None:
    out = tmp_path / "x.mp4"
    line = run_error(
        ["animate", str(photo_path), "--model", str(tmp_path / "no-such-model"), "--out", str(out)],
        capsys,
    )
    assert "does not exist" in line and not out.exists()
    line = run_error(
        ["animate", str(photo_path), "--model", str(tmp_path), "--out", str(out)], capsys
    )
    assert "model_index.json" in line and not out.exists()


def test_unknown_preset(photo_path, capsys) -> None:
    line = run_error(["animate", str(photo_path), "--model", "sora"], capsys)
    assert "Unknown model 'sora'" in line and all(name in line for name in PRESETS)


def test_uncached_hub_id_fails_fast(photo_path, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    started = time.monotonic()
    line = run_error(["animate", str(photo_path), "--model", "some-org/some-i2v-model"], capsys)
    assert time.monotonic() - started < 5
    assert (
        "huggingface-cli download some-org/some-i2v-model" in line
        and "pass a local directory" in line
    )


def test_uncached_hub_id_subprocess(photo_path, tmp_path) -> None:
    started = time.monotonic()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline",
            "animate",
            str(photo_path),
            "--model",
            "Lightricks/LTX-Video",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=offline_env(tmp_path),
        timeout=60,
    )
    assert time.monotonic() - started < 20
    assert result.returncode == 2 and result.stdout == ""
    assert "huggingface-cli download Lightricks/LTX-Video" in one_line(result.stderr)


def test_preset_not_downloaded(photo_path, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    line = run_error(["animate", str(photo_path), "--model", "svd"], capsys)
    assert "stabilityai/stable-video-diffusion-img2vid-xt" in line


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["animate", "missing.png"], "not found"),
        (["animate", "{photo}", "--size", "big"], "size must look like"),
        (["animate", "{photo}", "--motion", "11"], "motion must be from 1 to 10"),
        (["animate", "{photo}", "--camera", "spin"], "invalid choice"),
        (["animate", "{photo}", "--duration", "0"], "Duration must be"),
        (["animate", "{photo}", "--max-bytes", "lots"], "byte limit"),
        (["animate", "{photo}", "--steps", "0"], "Steps must be"),
        (["animate", "{photo}", "--end-image", "missing-end.png"], "End image file"),
        (["render", "{photo}"], "invalid choice"),
        (["animate"], "required: image"),
    ],
)
def test_usage_errors_are_one_line(
    argv, message, photo_path, tmp_path, monkeypatch, capsys
) -> None:
    monkeypatch.chdir(tmp_path)
    line = run_error([a.replace("{photo}", str(photo_path)) for a in argv], capsys)
    assert message in line


def test_unreadable_image_is_one_line(tiny_ltx_dir, tmp_path, capsys) -> None:
    fake = tmp_path / "holiday.png"
    fake.write_text("this is not a picture")
    out = tmp_path / "x.mp4"
    line = run_error(
        ["animate", str(fake), "--model", str(tiny_ltx_dir), *FAST, "--out", str(out)], capsys
    )
    assert line.startswith("error:") and not out.exists()
    line = run_error(["animate", str(tmp_path), "--model", str(tiny_ltx_dir)], capsys)
    assert "is a directory" in line


def test_a_cut_off_photo_for_the_camera_is_one_line(tmp_path, capsys) -> None:
    # The camera decodes a JPEG only once its plan says how much (DCT scaling): a photo cut off
    # mid-way is still refused first, in one line, before anything is drawn or written.
    whole = io.BytesIO()
    Image.new("RGB", (1600, 1200), (100, 150, 200)).save(whole, "JPEG", quality=90)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(whole.getvalue()[: len(whole.getvalue()) // 2])
    out = tmp_path / "x.mp4"
    line = run_error(
        ["animate", str(cut), "--model", "camera", "--duration", "1", "--size", "64x48", "--out", str(out)],
        capsys,
    )
    assert line == (
        "error: The image file is damaged or incomplete (it may have been cut off while "
        "uploading); please upload it again."
    )
    assert not out.exists() and not list(tmp_path.glob(".*part*"))


def test_models_command(capsys) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:3] == ["NAME", "RUNS", "HOW"]
    for name in ["camera", *PRESETS]:
        assert any(line.startswith(name + " ") for line in out.splitlines()), name
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {row["name"] for row in rows} == {"camera", *PRESETS}
    camera = next(row for row in rows if row["name"] == "camera")
    assert camera["runnable"] and not camera["is_ai"]


def test_models_says_which_video_encoder_this_machine_uses(
    capsys, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """NVENC when ffmpeg can open it here, else libx264 and why (issue 19: A100/H100/H200 have
    no NVENC; a container needs the NVIDIA `video` capability)."""
    from pipeline import cli, ffmpeg

    monkeypatch.setattr(ffmpeg, "NVIDIA_DRIVER", str(tmp_path / "nvidiactl"))
    monkeypatch.setattr(ffmpeg, "nvenc_available", lambda: False)
    assert main(["models"]) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert last == "video encoder: libx264 on the CPU (no NVENC on this machine)"
    (tmp_path / "nvidiactl").touch()  # a driver, but no NVENC opened
    assert "A100, H100 or H200" in cli._encoder_line()
    assert "NVIDIA video capability" in cli._encoder_line()
    monkeypatch.setattr(ffmpeg, "nvenc_available", lambda: True)
    assert cli._encoder_line() == "video encoder: NVENC (h264_nvenc) on the GPU"


@pytest.mark.parametrize("move", ["zoom_in", "orbit"])
def test_a_quiet_camera_clip_starts_one_process_and_imports_only_what_it_draws_with(
    photo_path, tmp_path, move: str
) -> None:
    # A camera clip takes well under a second, so what the CLI does around ffmpeg shows: the
    # encode is the only process it starts (no `ffmpeg -version` to vet the binary, ~40 ms),
    # and -q draws no bar, so tqdm (~40 ms to import) stays out, as torch does; numpy (45 ms)
    # and PyAV stay out too: ffmpeg draws the move, and Python plans it in plain numbers.
    out = tmp_path / "quiet.mp4"
    script = (
        "import runpy, subprocess, sys\n"
        "started = []\n"
        "class Counted(subprocess.Popen):\n"
        "    def __init__(self, args, *rest, **options):\n"
        "        started.append(list(args)[1:2])\n"
        "        super().__init__(args, *rest, **options)\n"
        "subprocess.Popen = Counted\n"
        f"sys.argv = ['pipeline', 'animate', {str(photo_path)!r}, '--model', 'camera', '--size',"
        f" '64x48', '--duration', '1', '--fps', '10', '--camera', {move!r}, '--out', {str(out)!r},"
        " '-q']\n"
        "try:\n"
        "    runpy.run_module('pipeline', run_name='__main__')\n"
        "except SystemExit as exit:\n"
        "    assert not exit.code, exit.code\n"
        "loaded = sorted(m for m in ('tqdm', 'torch', 'numpy', 'av') if m in sys.modules)\n"
        "print(started, loaded, file=sys.stderr)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
        env={**os.environ, "IMAGEIO_FFMPEG_EXE": ""},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().splitlines()[-1] == "[['-hide_banner']] []"
    assert_clip(out, 64, 48, 10, 10)


def test_camera_model_through_the_cli(photo_path, tmp_path, capsys) -> None:
    out = tmp_path / "cam.mp4"
    code = main(
        [
            "animate",
            str(photo_path),
            "--model",
            "camera",
            "--size",
            "64x48",
            "--duration",
            "1",
            "--fps",
            "10",
            "--camera",
            "zoom_in",
            "--out",
            str(out),
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert_clip(out, 64, 48, 10, 10)
