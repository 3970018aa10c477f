# ruff: noqa: F811  (pytest fixtures imported from tiny_models are "redefined" as arguments)
"""LTX-2 with sound: a tiny LTX2ImageToVideoPipeline saved in diffusers' layout and loaded by
the production loader; every MP4 and its AAC track read back by PyAV.

Sizes are tiny (64×64, one second) so a render takes a few seconds on a CPU; the code path is
the one a 22B checkpoint takes.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image
from tiny_models import tiny_ltx2_dir  # noqa: F401  (session fixture)

from contract import AnimateRequest, BackendOptions
from pipeline.animate import animate
from pipeline.audio import Soundtrack, crossfade_loop_audio, read_audio
from pipeline.backends import load_backend
from pipeline.backends.base import Rendered
from pipeline.backends.camera import CameraBackend
from pipeline.cli import main
from pipeline.encode import encode_mp4
from pipeline.presets import PRESETS

FPS = 24
SMALL = ["--size", "32x32", "--duration", "0.7", "--seed", "3"]
FRAMES = 17  # 0.7 s at 24 fps on LTX's 8k+1 frame rule


def streams(mp4: bytes) -> dict[str, dict[str, float]]:
    """Per stream type: codec, duration in seconds (from the decoded samples, not the header)
    and, for audio, the sample rate and the RMS level."""
    found: dict[str, dict[str, float]] = {}
    with av.open(io.BytesIO(mp4)) as container:
        for stream in container.streams.video:
            frames = sum(1 for _ in container.decode(stream))
            found["video"] = {"codec": stream.codec_context.name, "frames": frames,
                              "seconds": frames / float(stream.average_rate)}
    sound = read_audio(mp4)
    if sound is not None:
        with av.open(io.BytesIO(mp4)) as container:
            codec = container.streams.audio[0].codec_context.name
            bitrate = container.streams.audio[0].codec_context.bit_rate or 0
        found["audio"] = {"codec": codec, "seconds": sound.seconds, "rate": sound.rate,
                          "rms": float(np.sqrt(np.mean(sound.samples**2))), "bitrate": bitrate}
    return found


def photo(tmp_path: Path) -> Path:
    path = tmp_path / "photo.png"
    gradient = np.linspace(0, 255, 96 * 96 * 3).reshape(96, 96, 3).astype(np.uint8)
    Image.fromarray(gradient).save(path)
    return path


def run_cli(tmp_path: Path, model_dir: Path, *extra: str, name: str = "out.mp4") -> bytes:
    out = tmp_path / name
    code = main(["animate", str(photo(tmp_path)), "--model", str(model_dir), *SMALL, *extra,
                 "--prompt", "a dog barks at the sea", "--out", str(out)])
    assert code == 0
    return out.read_bytes()


@pytest.fixture(scope="module")
def ltx2_clip(tmp_path_factory: pytest.TempPathFactory, tiny_ltx2_dir: Path) -> bytes:
    """One clip with sound, made by the CLI (shared: each render takes seconds)."""
    return run_cli(tmp_path_factory.mktemp("ltx2-clip"), tiny_ltx2_dir)


def test_ltx2_clip_carries_its_sound_as_long_as_the_picture(ltx2_clip) -> None:
    found = streams(ltx2_clip)
    assert found["video"]["codec"] == "h264" and found["video"]["frames"] == FRAMES
    audio = found["audio"]
    assert audio["codec"] == "aac" and audio["rate"] == 8000  # the vocoder's declared rate
    # The same length as the picture, within one frame (AAC's priming samples are trimmed).
    assert abs(audio["seconds"] - found["video"]["seconds"]) <= 1 / FPS
    assert audio["rms"] > 1e-4  # the model's sound, not silence


def test_no_audio_gives_a_silent_mp4(tmp_path, tiny_ltx2_dir) -> None:
    found = streams(run_cli(tmp_path, tiny_ltx2_dir, "--no-audio"))
    assert "video" in found and "audio" not in found


def test_ltx2_runs_the_distilled_schedule_with_every_guidance_pass_off(tiny_ltx2_dir) -> None:
    backend = load_backend(str(tiny_ltx2_dir), BackendOptions(device="cpu"))
    assert backend.info.family == "ltx2" and backend.info.supports_audio
    request = AnimateRequest(image=b"", duration=0.7, width=32, height=32, seed=1)
    plan = backend.plan(request, (32, 32))
    preset = PRESETS["ltx2"]
    assert plan.sigmas == preset.default_sigmas and plan.steps == 8 and plan.guidance == 1.0
    kwargs = backend.call_arguments(plan, Image.new("RGB", (32, 32)))
    assert kwargs["sigmas"] == list(preset.default_sigmas) and "timesteps" not in kwargs
    assert kwargs["frame_rate"] == 24.0 and kwargs["num_frames"] == FRAMES
    # One transformer pass per step: no CFG, no spatio-temporal guidance, no modality isolation.
    assert kwargs["guidance_scale"] == 1.0 and kwargs["audio_guidance_scale"] == 1.0
    assert kwargs["stg_scale"] == 0.0 and kwargs["audio_stg_scale"] == 0.0
    assert kwargs["modality_scale"] == 1.0 and kwargs["audio_modality_scale"] == 1.0
    rendered = backend.render(Image.new("RGB", (32, 32), (200, 90, 40)), plan, request)
    assert isinstance(rendered, Rendered) and rendered.frames.shape == (FRAMES, 32, 32, 3)
    assert rendered.audio is not None and rendered.audio.rate == 8000
    # The vocoder's sound spans the frames (to within the audio latents' 40 ms grid).
    assert rendered.audio.seconds == pytest.approx(FRAMES / FPS, abs=2 / FPS)
    backend.close()


def test_byte_limit_budgets_the_sound(tmp_path, tiny_ltx2_dir) -> None:
    limit = 16 * 1024  # the smallest limit a request may set
    mp4 = run_cli(tmp_path, tiny_ltx2_dir, "--max-bytes", str(limit))
    assert len(mp4) <= limit
    found = streams(mp4)
    # 128 kbit/s would be 11 KiB of the 16: the sound steps down to leave the picture room.
    assert "audio" in found and 0 < found["audio"]["bitrate"] <= 48_000


def sine(seconds: float, rate: int = 16000, hz: float = 440.0) -> Soundtrack:
    t = np.arange(round(seconds * rate)) / rate
    wave = 0.5 * np.sin(2 * math.pi * hz * t).astype(np.float32)
    return Soundtrack(np.stack([wave, wave]), rate)


def test_the_sound_survives_aac_in_the_mp4() -> None:
    frames = np.full((24, 32, 32, 3), 120, np.uint8)
    tone = sine(1.0)
    video = encode_mp4(frames, 24, audio=tone)
    back = read_audio(video.data)
    assert back is not None and back.rate == 16000 and back.channels == 2
    assert back.seconds == pytest.approx(1.0, abs=1 / 24)
    n = min(back.samples.shape[1], tone.samples.shape[1])
    # Skip the first 50 ms (the encoder's ramp-in); AAC at 128 kbit/s keeps a tone nearly exact.
    a, b = tone.samples[0, 800:n], back.samples[0, 800:n]
    assert np.corrcoef(a, b)[0, 1] > 0.99


def test_a_crossfaded_loop_has_no_click_at_the_seam() -> None:
    frames, fade, fps = 48, 12, 24
    loop = crossfade_loop_audio(sine(2.0, hz=2.7), fps, frames, fade)
    # The loop is as long as the crossfaded frames: 48 - 12 frames.
    assert loop.samples.shape[1] == round((frames - fade) / fps * 16000)
    samples = loop.samples[0]
    steps = np.abs(np.diff(samples))
    seam = abs(samples[0] - samples[-1])  # played again, the last sample leads into the first
    assert seam <= 3 * steps.max()
    # Without the dissolve the seam jumps from the tone at 2 s back to the tone at 0.5 s.
    raw = sine(2.0, hz=2.7).samples[0]
    assert abs(raw[round(0.5 * 16000)] - raw[-1]) > 20 * steps.max()


def test_extending_keeps_the_first_clips_sound_and_pads_a_silent_part(
    tmp_path, ltx2_clip
) -> None:
    first = ltx2_clip
    camera = load_backend("camera")
    image = photo(tmp_path).read_bytes()
    result = animate(
        AnimateRequest(image=image, model="camera", duration=1.0, previous_clip=first, seed=1),
        camera,
    )
    assert result.audio
    before, after = read_audio(first), read_audio(result.video)
    assert before is not None and after is not None
    total = result.frames / result.fps
    assert after.seconds == pytest.approx(total, abs=1 / FPS)
    # The first clip's sound comes first, then silence for the camera move's new second.
    head = after.samples[:, : before.samples.shape[1] - 400]
    assert np.corrcoef(head[0], before.samples[0, : head.shape[1]])[0, 1] > 0.9
    assert np.abs(after.samples[:, after.at(before.seconds + 0.1) :]).max() < 0.02


def test_the_published_text_to_video_layout_loads_as_image_to_video(tmp_path, tiny_ltx2_dir) -> None:
    """diffusers/LTX-2.3-Distilled-Diffusers names LTX2Pipeline in its model_index: the same
    components are loaded into LTX2ImageToVideoPipeline, with the ltx2 preset's settings."""
    import json
    import shutil

    from pipeline.backends.source import resolve

    published = tmp_path / "LTX-2.3-Distilled-Diffusers"
    shutil.copytree(tiny_ltx2_dir, published)
    index = json.loads((published / "model_index.json").read_text())
    index["_class_name"] = "LTX2Pipeline"
    (published / "model_index.json").write_text(json.dumps(index))
    source = resolve(str(published))
    assert (source.class_name, source.family, source.load_class, source.preset.name) == (
        "LTX2Pipeline", "ltx2", "LTX2ImageToVideoPipeline", "ltx2"
    )
    backend = load_backend(str(published), BackendOptions(device="cpu"))
    assert type(backend.pipe).__name__ == "LTX2ImageToVideoPipeline"
    backend.close()


def test_a_tight_limit_fits_picture_and_sound_together() -> None:
    """Five seconds of noise (hard to compress) with a tone under 60 KB: the picture's bitrate is
    worked out after the sound's share, so the whole file fits and keeps its sound."""
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (60, 120, 160, 3), dtype=np.uint8)
    limit = 60 * 1024
    video = encode_mp4(frames, 12, max_bytes=limit, audio=sine(5.0))
    assert len(video.data) <= limit
    back = read_audio(video.data)
    assert back is not None and back.seconds == pytest.approx(5.0, abs=1 / 12)
    with av.open(io.BytesIO(video.data)) as container:
        assert container.streams.audio[0].codec_context.bit_rate <= 48_000


class CameraWithTone(CameraBackend):
    """The camera move with a 16 kHz tone beside it: a backend that makes sound, cheaply."""

    render_yuv420 = None  # the RGB path, where frames and sound are cut together

    def render(self, image, plan, request, **kwargs):  # type: ignore[no-untyped-def]
        frames = super().render(image, plan, request, **kwargs)
        return Rendered(frames, sine(len(frames) / plan.fps, hz=2.7))


def test_extending_joins_tracks_of_different_rates_at_the_new_parts_rate(tmp_path, ltx2_clip) -> None:
    """The first clip's 8 kHz sound is brought to the new part's 16 kHz by FFmpeg's resampler
    (read_audio), then the new part's tone follows it."""
    result = animate(
        AnimateRequest(image=photo(tmp_path).read_bytes(), model="camera", duration=1.0,
                       previous_clip=ltx2_clip, seed=1),
        CameraWithTone(),
    )
    before, after = read_audio(ltx2_clip), read_audio(result.video)
    assert before is not None and after is not None and (before.rate, after.rate) == (8000, 16000)
    assert after.seconds == pytest.approx(result.frames / result.fps, abs=1 / FPS)
    head = read_audio(ltx2_clip, rate=16000)
    assert head is not None and head.rate == 16000
    n = head.samples.shape[1] - 800
    assert np.corrcoef(after.samples[0, :n], head.samples[0, :n])[0, 1] > 0.9
    tail = after.samples[0, after.at(before.seconds + 0.05):]
    assert np.abs(tail).max() > 0.3  # the tone, not silence


def test_a_crossfaded_loop_with_sound_keeps_them_in_step() -> None:
    """The orchestrator cuts the sound with the frames: a loop of a model that makes sound
    (rendered here by the camera move with a tone beside it) is as long in sound as in
    picture, and the tone runs on across the seam."""
    gradient = io.BytesIO()
    Image.fromarray(np.linspace(0, 255, 64 * 96 * 3).reshape(64, 96, 3).astype(np.uint8)).save(gradient, "PNG")
    request = AnimateRequest(image=gradient.getvalue(), model="camera", duration=2.0, loop=True,
                             width=96, height=64, fps=12, seed=1)
    result = animate(request, CameraWithTone())
    assert result.loop == "crossfade" and result.audio
    sound = read_audio(result.video)
    assert sound is not None
    assert sound.seconds == pytest.approx(result.frames / result.fps, abs=1 / result.fps)
    silent = animate(request.replace(audio=False), CameraWithTone())
    assert not silent.audio and read_audio(silent.video) is None
