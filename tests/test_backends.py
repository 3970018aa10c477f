"""Diffusion backends on tiny random-weight pipelines, loaded through the production loader.

Covers: presets as data, family detection from model_index.json, family defaults applied to
any directory, plans on each family's rules, rendering, progress order, cancellation, OOM
mapping, end images, the hub-id path (offline, from a local cache), the registry.
"""

# ruff: noqa: F811  (pytest fixtures imported from tiny_models are "redefined" as arguments)
from __future__ import annotations

import io
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from PIL import Image  # noqa: E402
from tiny_models import (  # noqa: E402,F401  (session fixtures; see tiny_models.py)
    tiny_cogvideox_dir,
    tiny_ltx_dir,
    tiny_model_dir,
    tiny_model_dirs,
    tiny_svd_dir,
    tiny_wan_a14b_dir,
    tiny_wan_dir,
    tiny_wan_ti2v_dir,
)

from contract import (  # noqa: E402  # noqa: E402
    CARDS,
    AnimateRequest,
    BackendOptions,
    Cancelled,
    ModelError,
    Progress,
)
from contract.sizes import choose_size, size_for_area, snap_size  # noqa: E402
from pipeline.presets import (  # noqa: E402
    FAMILY_OF_CLASS,
    I2V_CLASS,
    PRESETS,
    camera_phrase,
    frames_for,
    motion_prompt,
    svd_conditioning,
)

REPO = Path(__file__).resolve().parents[1]


def photo(width: int = 96, height: int = 64) -> Image.Image:
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None, None]
    rgb = np.concatenate([x + 0 * y, y + 0 * x, (x + y) / 2], axis=2)
    return Image.fromarray(rgb.astype(np.uint8))


def request(**changes: object) -> AnimateRequest:
    base: dict[str, object] = dict(
        image=b"not used by plan/render",
        prompt="a cat",
        seed=7,
        duration=1.0,
        fps=8,
        width=64,
        height=64,
        steps=2,
    )
    base.update(changes)
    return AnimateRequest(**base)  # type: ignore[arg-type]


_BACKENDS: dict[str, object] = {}


@pytest.fixture(scope="module")
def backends(tiny_model_dirs: dict[str, Path]):
    """One loaded backend per tiny model, shared by this module (loading is the slow part)."""
    from pipeline.backends.diffusion import DiffusionBackend

    for kind, directory in tiny_model_dirs.items():
        if kind not in _BACKENDS:
            _BACKENDS[kind] = DiffusionBackend(str(directory))
    return _BACKENDS


# --- presets -------------------------------------------------------------------------------


def test_importing_pipeline_data_modules_does_not_import_torch() -> None:
    code = (
        "import sys, pipeline, pipeline.presets, pipeline.backends, contract, "
        "pipeline.backends.loader, pipeline.backends.families, pipeline.cli, "
        "pipeline.backends.source, pipeline.backends.hub, pipeline.backends.model_index, "
        "pipeline.backends.placement, pipeline.backends.speedups, "
        "pipeline.backends.speedups.attention, pipeline.backends.speedups.cache, "
        "pipeline.backends.speedups.compile, pipeline.backends.frames, pipeline.probe; "
        "heavy = [m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


@pytest.mark.parametrize("preset", PRESETS.values(), ids=list(PRESETS))
def test_preset_is_consistent(preset) -> None:
    import diffusers

    assert hasattr(diffusers, preset.pipeline_class)
    assert preset.family in ("ltx", "ltx2", "wan", "svd", "cogvideox")
    assert "/" in preset.repo_id and preset.card.label and preset.source
    for frames in (preset.default_frames, preset.min_frames, preset.max_frames):
        assert (frames - 1) % preset.frame_step == 0, frames
    assert preset.min_frames <= preset.default_frames <= preset.max_frames
    assert preset.area or preset.buckets
    for width, height in preset.buckets:
        assert width % preset.multiple == 0 and height % preset.multiple == 0
    assert max(preset.card.durations) <= preset.max_duration + 0.5
    assert preset.dtype in ("bfloat16", "float16")
    if preset.default_timesteps:
        assert len(preset.default_timesteps) == preset.steps
    if preset.default_sigmas:
        assert len(preset.default_sigmas) == preset.steps and not preset.default_timesteps


@pytest.mark.parametrize("preset", PRESETS.values(), ids=list(PRESETS))
def test_cards_and_presets_agree_on_sizes(preset) -> None:
    """The bot warns about a small photo from the card before the member pays; the worker
    renders from the preset. Both must pick the same size for every photo."""
    card = CARDS[preset.name]
    assert (card.area, card.buckets, card.multiple) == (preset.area, preset.buckets, preset.multiple)
    for aspect in (16 / 9, 4 / 3, 1.0, 3 / 4, 9 / 16, 2.5):
        if preset.area:
            expected = size_for_area(aspect, preset.area, preset.multiple)
        else:
            expected = snap_size(*choose_size(aspect, preset.buckets), preset.multiple)
        assert card.working_size(aspect) == expected, aspect


def test_known_classes_exist_in_diffusers() -> None:
    import diffusers

    for name in [*FAMILY_OF_CLASS, *I2V_CLASS.values()]:
        assert hasattr(diffusers, name), name


def test_recommended_settings() -> None:
    ltx, wan, wan14, svd, cog = (PRESETS[n] for n in ("ltx", "wan", "wan-14b", "svd", "cogvideox"))
    assert (ltx.guidance, ltx.steps, ltx.multiple, ltx.frame_step) == (1.0, 8, 32, 8)
    assert (wan.multiple, wan.frame_step, wan.fps, wan.area) == (32, 4, 24, 1280 * 704)
    assert (wan14.multiple, wan14.fps, wan14.default_frames, wan14.card.supports_end_image) == (
        16,
        16,
        81,
        True,
    )
    assert (wan14.steps, wan14.guidance) == (40, 3.5)
    assert (svd.dtype, svd.default_frames, svd.card.supports_prompt, svd.buckets[0]) == (
        "float16",
        25,
        False,
        (1024, 576),
    )
    assert (cog.buckets, cog.default_frames, cog.fps) == (((720, 480),), 49, 8)


@settings(max_examples=200, deadline=None)
@given(
    duration=st.floats(min_value=0.05, max_value=60),
    fps=st.integers(min_value=1, max_value=60),
    step=st.sampled_from([1, 4, 8]),
    lo=st.integers(min_value=1, max_value=40),
    span=st.integers(min_value=0, max_value=300),
)
def test_frames_follow_the_rule_and_limits(
    duration: float, fps: int, step: int, lo: int, span: int
) -> None:
    n = frames_for(duration, fps, frame_step=step, min_frames=lo, max_frames=lo + span)
    on_rule = [k for k in range(1, lo + span + step + 1) if (k - 1) % step == 0]
    lowest = min(k for k in on_rule if k >= lo)
    highest = max([k for k in on_rule if k <= lo + span] + [lowest])
    assert (n - 1) % step == 0 and lowest <= n <= highest
    if lowest < n < highest:  # not clamped: the nearest count on the rule
        assert abs(n - duration * fps) <= step / 2 + 1


def test_frames_for_durations() -> None:
    assert PRESETS["ltx"].frames_for(3.0) == 73  # 72 -> 8k+1
    assert PRESETS["ltx"].frames_for(5.0) == 121
    assert PRESETS["wan"].frames_for(5.0) == 121
    assert PRESETS["wan-14b"].frames_for(5.0) == 81
    assert PRESETS["wan-14b"].frames_for(60.0) == 81  # clamped to the model's maximum
    assert PRESETS["svd"].frames_for(3.0) == 21
    assert PRESETS["cogvideox"].frames_for(1.0) == 49  # fixed


def test_camera_and_motion_become_words() -> None:
    text = motion_prompt("A dog on a beach", "pan_left", 2)
    assert text.startswith("A dog on a beach.") and "very slowly pans to the left" in text
    assert "quickly zooms in" in motion_prompt("", "zoom_in", 10)
    assert motion_prompt("", "static", 5).startswith("The scene in the photo comes to life.")
    assert "barely perceptible push-in" in camera_phrase("static", 9)
    buckets = [svd_conditioning(m)["motion_bucket_id"] for m in range(1, 11)]
    assert buckets == sorted(buckets) and svd_conditioning(5) == {
        "motion_bucket_id": 127,
        "noise_aug_strength": 0.02,
    }
    assert svd_conditioning(10)["noise_aug_strength"] == pytest.approx(0.1)


# --- family detection ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "class_name", "family", "load_class", "preset"),
    [
        ("ltx", "LTXConditionPipeline", "ltx", "LTXConditionPipeline", "ltx"),
        ("wan", "WanImageToVideoPipeline", "wan", "WanImageToVideoPipeline", "wan-14b"),
        ("wan_a14b", "WanImageToVideoPipeline", "wan", "WanImageToVideoPipeline", "wan-14b"),
        ("wan_ti2v", "WanPipeline", "wan", "WanImageToVideoPipeline", "wan"),
        ("svd", "StableVideoDiffusionPipeline", "svd", "StableVideoDiffusionPipeline", "svd"),
        (
            "cogvideox",
            "CogVideoXImageToVideoPipeline",
            "cogvideox",
            "CogVideoXImageToVideoPipeline",
            "cogvideox",
        ),
    ],
)
def test_family_is_read_from_model_index(
    tiny_model_dirs, kind, class_name, family, load_class, preset
) -> None:
    from pipeline.backends.source import resolve

    source = resolve(str(tiny_model_dirs[kind]))
    assert (
        json.loads((tiny_model_dirs[kind] / "model_index.json").read_text())["_class_name"]
        == class_name
    )
    assert (source.class_name, source.family, source.load_class, source.preset.name) == (
        class_name,
        family,
        load_class,
        preset,
    )
    assert source.is_local and source.local_files_only


@pytest.mark.parametrize(
    ("model_index", "message"),
    [
        ({"_class_name": "CogVideoXPipeline"}, "not an image-to-video pipeline"),
        ({"_class_name": "StableDiffusionPipeline"}, "not an image-to-video pipeline"),
        ({"_class_name": "HunyuanVideoImageToVideoPipeline"}, "does not support"),
        ({"_class_name": "WanPipeline", "expand_timesteps": False}, "text-to-video"),
    ],
)
def test_models_that_cannot_animate_a_photo_are_refused(
    tmp_path: Path, model_index, message
) -> None:
    from pipeline.backends.source import resolve

    (tmp_path / "model_index.json").write_text(json.dumps(model_index))
    with pytest.raises(ModelError, match=message):
        resolve(str(tmp_path))


def test_bad_model_index_is_a_model_error(tmp_path: Path) -> None:
    from pipeline.backends.source import resolve

    (tmp_path / "model_index.json").write_text("{not json")
    with pytest.raises(ModelError, match="Cannot read"):
        resolve(str(tmp_path))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="no model_index.json"):
        resolve(str(tmp_path / "empty"))


def test_broken_weights_are_a_model_error(tiny_ltx_dir: Path, tmp_path: Path) -> None:
    from pipeline.backends.diffusion import DiffusionBackend

    broken = tmp_path / "broken"
    shutil.copytree(tiny_ltx_dir, broken)
    shutil.rmtree(broken / "transformer")
    with pytest.raises(ModelError, match="Cannot load"):
        DiffusionBackend(str(broken))
    corrupt = tmp_path / "corrupt"
    shutil.copytree(tiny_ltx_dir, corrupt)
    for weights in (corrupt / "vae").glob("*.safetensors"):
        weights.write_bytes(b"\x00" * 64)
    with pytest.raises(ModelError, match="Cannot load"):
        DiffusionBackend(str(corrupt))


# --- plans ---------------------------------------------------------------------------------


def test_family_defaults_apply_to_any_directory(backends) -> None:
    # No size, steps or fps asked: everything comes from the family's preset and the model.
    plain = AnimateRequest(image=b"x", seed=1, duration=3.0)
    ltx = backends["ltx"].plan(plain, (1600, 900))
    assert (ltx.num_frames - 1) % 8 == 0 and ltx.num_frames == 73 and ltx.fps == 24
    assert ltx.width % 32 == 0 and ltx.height % 32 == 0 and ltx.width > ltx.height
    assert ltx.steps == 8 and ltx.guidance == 1.0
    assert ltx.timesteps == tuple(PRESETS["ltx"].default_timesteps)
    assert ltx.call["decode_timestep"] == 0.05

    wan14 = backends["wan"].plan(plain, (900, 1600))
    assert (wan14.num_frames - 1) % 4 == 0 and wan14.fps == 16 and wan14.num_frames == 49
    assert wan14.width % 16 == 0 and wan14.height % 16 == 0 and wan14.height > wan14.width
    assert wan14.width * wan14.height == pytest.approx(480 * 832, rel=0.06)

    ti2v = backends["wan_ti2v"].plan(plain, (1280, 720))
    assert (ti2v.num_frames - 1) % 4 == 0 and ti2v.fps == 24
    assert ti2v.width % 32 == 0 and ti2v.height % 32 == 0  # the 5B's 16x VAE x patch 2
    assert ti2v.width * ti2v.height == pytest.approx(1280 * 704, rel=0.06)

    svd = backends["svd"].plan(plain, (1600, 900))
    assert (svd.width, svd.height, svd.fps, svd.num_frames) == (1024, 576, 7, 21)
    assert backends["svd"].plan(plain, (900, 1600)).width == 576
    assert svd.call["motion_bucket_id"] == 127 and svd.prompt == ""

    cog = backends["cogvideox"].plan(plain, (1600, 900))
    assert (cog.width, cog.height, cog.num_frames) == (32, 32, 49)  # learned positional embeddings


def test_requested_numbers_snap_to_the_model_rules(backends) -> None:
    plan = backends["ltx"].plan(
        request(width=100, height=60, steps=4, duration=1.1, fps=10), (100, 60)
    )
    assert (plan.width, plan.height) == (96, 64)
    assert plan.steps == 4 and plan.timesteps == ()
    assert plan.num_frames == 9 and plan.fps == 10
    plan = backends["wan"].plan(request(width=210, height=None), (400, 200))
    assert (plan.width, plan.height) == (208, 112)


def test_prompt_carries_camera_and_motion(backends) -> None:
    plan = backends["wan"].plan(
        request(prompt="a cat", camera="zoom_out", motion=9, negative_prompt=""), (64, 64)
    )
    assert plan.prompt.startswith("a cat.") and "quickly zooms out" in plan.prompt
    assert "worst quality" in plan.negative_prompt
    plan = backends["svd"].plan(request(camera="orbit", motion=10), (64, 64))
    assert plan.call["motion_bucket_id"] == 230
    assert any("camera" in w for w in plan.warnings)


def test_seed_is_chosen_when_not_given(backends) -> None:
    seeds = {backends["ltx"].plan(request(seed=None), (64, 64)).seed for _ in range(3)}
    assert len(seeds) > 1


# --- render --------------------------------------------------------------------------------


EXPECTED_FRAMES = {"ltx": 9, "wan": 17, "wan_a14b": 17, "wan_ti2v": 17, "svd": 14, "cogvideox": 49}


@pytest.mark.parametrize("kind", list(EXPECTED_FRAMES))
def test_render_returns_uint8_frames_and_ordered_progress(backends, kind: str) -> None:
    backend = backends[kind]
    req = request(steps=3)
    plan = backend.plan(req, (96, 64))
    events: list[Progress] = []
    frames = backend.render(
        photo().resize((plan.width, plan.height)), plan, req, emit=events.append
    )
    assert frames.dtype == np.uint8 and frames.shape == (
        EXPECTED_FRAMES[kind],
        plan.height,
        plan.width,
        3,
    )
    denoise = [e for e in events if e.stage == "denoise"]
    assert [e.step for e in denoise] == [0, 1, 2, 3] and {e.total for e in denoise} == {3}
    assert [e.stage for e in events][-2:] == ["decode", "decode"]
    preview = events[-1].preview
    assert preview is not None and Image.open(io.BytesIO(preview)).format == "JPEG"


def test_same_seed_same_video(backends) -> None:
    backend = backends["ltx"]
    plan = backend.plan(request(), (64, 64))
    a = backend.render(photo(64, 64), plan, request())
    b = backend.render(photo(64, 64), plan, request())
    c = backend.render(photo(64, 64), backend.plan(request(seed=8), (64, 64)), request(seed=8))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


@pytest.mark.parametrize("kind", ["ltx", "svd"])  # LTX honours pipe._interrupt, SVD ignores it
def test_cancel_mid_denoise(backends, kind: str) -> None:
    backend = backends[kind]
    req = request(steps=4)
    plan = backend.plan(req, (64, 64))
    events: list[Progress] = []

    def stop() -> bool:
        return any(e.stage == "denoise" and e.step >= 2 for e in events)

    with pytest.raises(Cancelled):
        backend.render(photo(64, 64), plan, req, emit=events.append, should_stop=stop)
    steps = [e.step for e in events if e.stage == "denoise"]
    assert steps == [0, 1, 2] and not any(e.stage == "decode" for e in events)
    # The backend stays usable after a cancelled job.
    plan = backend.plan(request(steps=1), (64, 64))
    assert backend.render(photo(64, 64), plan, req).shape[0] == EXPECTED_FRAMES[kind]


def test_cancel_before_start(backends) -> None:
    with pytest.raises(Cancelled):
        backends["wan"].render(
            photo(64, 64),
            backends["wan"].plan(request(), (64, 64)),
            request(),
            should_stop=lambda: True,
        )


@pytest.mark.parametrize("kind", ["ltx", "wan_a14b"])
def test_end_image(backends, kind: str) -> None:
    backend = backends[kind]
    assert backend.info.supports_end_image
    plan = backend.plan(request(), (64, 64))
    end = Image.new("RGB", (64, 64), (255, 0, 0))
    frames = backend.render(photo(64, 64), plan, request(), end_image=end)
    assert frames.shape[0] == EXPECTED_FRAMES[kind]


def test_end_image_unsupported_families(backends) -> None:
    assert not backends["wan_ti2v"].info.supports_end_image  # expand_timesteps ignores last_image
    assert not backends["wan"].info.supports_end_image  # one CLIP image token set (not FLF2V)
    assert not backends["svd"].info.supports_end_image
    assert not backends["cogvideox"].info.supports_end_image


def test_out_of_memory_becomes_a_retryable_oom_error(backends) -> None:
    import torch

    from contract import OutOfMemory

    backend = backends["ltx"]
    real = backend._pipe

    class Exhausted:
        def __call__(self, **kwargs):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

        def maybe_free_model_hooks(self) -> None:
            pass

    backend._pipe = Exhausted()
    try:
        with pytest.raises(OutOfMemory) as caught:
            backend.render(photo(64, 64), backend.plan(request(), (64, 64)), request())
    finally:
        backend._pipe = real
    failed = caught.value.to_event()
    assert failed.kind == "oom" and failed.retryable and "64×64" in failed.reason


def test_cache_option_applies_first_block_cache(tiny_wan_ti2v_dir: Path) -> None:
    from pipeline.backends.diffusion import DiffusionBackend

    backend = DiffusionBackend(
        str(tiny_wan_ti2v_dir), options=BackendOptions(cache=True, compile=True)
    )
    assert backend.pipe.transformer.is_cache_enabled
    plan = backend.plan(request(steps=3), (64, 64))
    assert backend.render(photo(64, 64), plan, request(steps=3)).shape == (17, 64, 64, 3)
    backend.close()


def _attention_backends(module) -> dict[str, str | None]:
    from pipeline.backends.speedups.attention import dispatched_backends

    return dispatched_backends(module)


def test_attention_backend_applies_to_self_attention_only(tiny_ltx_dir: Path) -> None:
    """LTX's cross-attention carries a text padding mask that fused kernels refuse: it must
    stay on SDPA while self-attention takes the chosen kernel, and the render must work."""
    from diffusers.models.attention_dispatch import _AttentionBackendRegistry

    from pipeline.backends.diffusion import DiffusionBackend

    default = _AttentionBackendRegistry._active_backend
    backend = DiffusionBackend(str(tiny_ltx_dir), options=BackendOptions(attention="_native_math"))
    # Only this model's self-attention changed: diffusers' process-wide default did not, so
    # another model in the same worker is not switched to the kernel unasked.
    assert _AttentionBackendRegistry._active_backend == default
    backends = _attention_backends(backend.pipe.transformer)
    self_attention = {n: b for n, b in backends.items() if n.endswith("attn1")}
    cross_attention = {n: b for n, b in backends.items() if n.endswith("attn2")}
    assert len(self_attention) == 2 and len(cross_attention) == 2
    assert set(self_attention.values()) == {"_native_math"}
    assert set(cross_attention.values()) == {"native"}
    assert backend.attention == "_native_math"
    plan = backend.plan(request(steps=2), (64, 64))
    assert backend.render(photo(64, 64), plan, request(steps=2)).shape == (9, 64, 64, 3)
    backend.close()


def test_unmasked_cross_attention_takes_the_kernel_too(tiny_wan_ti2v_dir: Path) -> None:
    """C12: Wan's cross-attention to the text has no padding mask, so nothing keeps it on
    SDPA: every attention module of its transformer takes the chosen kernel, and it renders."""
    from pipeline.backends.diffusion import DiffusionBackend

    backend = DiffusionBackend(str(tiny_wan_ti2v_dir), options=BackendOptions(attention="_native_math"))
    backends = _attention_backends(backend.pipe.transformer)
    assert any(n.endswith("attn2") for n in backends), backends
    assert set(backends.values()) == {"_native_math"}, backends
    plan = backend.plan(request(steps=2), (64, 64))
    assert backend.render(photo(64, 64), plan, request(steps=2)).shape == (17, 64, 64, 3)
    backend.close()


def test_unavailable_attention_kernel_falls_back_to_sdpa(tiny_wan_ti2v_dir: Path, caplog) -> None:
    """flash-attn is not installed here: the job must still render, on SDPA, with a warning."""
    import torch

    from pipeline.backends.diffusion import DiffusionBackend
    from pipeline.backends.speedups.attention import choose_attention

    assert choose_attention("auto", torch.device("cpu")) is None
    assert choose_attention("native", torch.device("cuda")) is None
    with caplog.at_level(logging.WARNING, logger="pipeline"):
        backend = DiffusionBackend(str(tiny_wan_ti2v_dir), options=BackendOptions(attention="flash"))
    assert "Attention backend 'flash' not used" in caplog.text
    assert backend.attention == "native"
    assert set(_attention_backends(backend.pipe.transformer).values()) == {None}
    plan = backend.plan(request(steps=2), (64, 64))
    assert backend.render(photo(64, 64), plan, request(steps=2)).shape == (17, 64, 64, 3)
    backend.close()
    with pytest.raises(ValueError, match="attention must be"):
        BackendOptions(attention="flash; rm -rf")


def test_a_pipeline_built_in_memory_renders_like_a_loaded_one(tiny_ltx_dir: Path) -> None:
    """from_pipeline (used by the GPU benchmark for full-size models built from configs) gives
    the same plan and the same frames as loading the same pipeline from disk."""
    import diffusers

    from pipeline.backends.diffusion import DiffusionBackend

    loaded = DiffusionBackend(str(tiny_ltx_dir))
    pipe = diffusers.DiffusionPipeline.from_pretrained(str(tiny_ltx_dir))
    adopted = DiffusionBackend.from_pipeline(pipe, preset="ltx", name="tiny-ltx")
    assert adopted.source.family == "ltx" and adopted.preset.name == "ltx"
    assert adopted.info.name == "tiny-ltx" and adopted.info.supports_end_image
    ask = request(steps=2, seed=3)
    plan_a, plan_b = loaded.plan(ask, (64, 64)), adopted.plan(ask, (64, 64))
    assert plan_a == plan_b
    frames_a = loaded.render(photo(64, 64), plan_a, ask)
    frames_b = adopted.render(photo(64, 64), plan_b, ask)
    assert np.array_equal(frames_a, frames_b)
    with pytest.raises(ModelError, match="for wan models, not ltx"):
        DiffusionBackend.from_pipeline(pipe, preset="wan")
    loaded.close()
    adopted.close()


def test_low_memory(tiny_svd_dir: Path, tiny_ltx_dir: Path) -> None:
    from pipeline.backends.diffusion import DiffusionBackend

    backend = DiffusionBackend(str(tiny_svd_dir), options=BackendOptions(low_memory=True))
    plan = backend.plan(request(), (64, 64))
    assert plan.call["decode_chunk_size"] == 2
    # SVD's temporal VAE has no tiled decode: low-memory mode (the retry after running out of
    # memory) must render without it rather than fail every retry.
    frames = backend.render(photo(64, 64), plan, request())
    assert frames.shape[1:] == (64, 64, 3) and not getattr(backend.pipe.vae, "use_tiling", False)
    backend = DiffusionBackend(str(tiny_ltx_dir), options=BackendOptions(low_memory=True))
    frames = backend.render(photo(64, 64), backend.plan(request(), (64, 64)), request())
    assert frames.shape == (9, 64, 64, 3) and backend.pipe.vae.use_tiling


@pytest.mark.parametrize(
    ("free", "low_memory", "expected"),
    [(80.0, False, "none"), (80.0, True, "model"), (40.0, False, "model"), (12.0, False, "group")],
)
def test_offload_is_chosen_from_free_vram(free: float, low_memory: bool, expected: str) -> None:
    from pipeline.backends.placement import choose_offload

    assert (
        choose_offload(free, full_gib=60.0, offloaded_gib=30.0, low_memory=low_memory) == expected
    )


def test_offload_config_estimates_the_need_only_when_it_chooses(monkeypatch) -> None:
    """On CUDA, "auto" (and "none" in low-memory mode) weigh free VRAM against the checkpoint's
    need; an explicit mode is taken as is, without reading every weight file's header."""
    import torch

    from pipeline.backends.placement import OffloadConfig, offload_config, tiling_config

    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (40 * 2**30, 80 * 2**30))
    cuda, asked = torch.device("cuda"), []

    def need() -> tuple[float, float]:
        asked.append(True)
        return 60.0, 30.0

    assert offload_config(BackendOptions(), cuda, need).mode == "model" and len(asked) == 1
    assert offload_config(BackendOptions(offload="group"), cuda, need).mode == "group"
    assert len(asked) == 1
    low = offload_config(BackendOptions(offload="none", low_memory=True), cuda, need)
    assert low.mode == "model" and len(asked) == 2
    assert offload_config(BackendOptions(), torch.device("cpu"), need).mode == "none"
    assert tiling_config(BackendOptions(), OffloadConfig(cuda, "model")).force
    assert not tiling_config(BackendOptions(), OffloadConfig(cuda, "none")).force


def test_memory_need_is_read_from_the_checkpoint(backends) -> None:
    full, offloaded = backends["wan_a14b"].memory_need_gib()
    assert 6.0 < offloaded < full < 7.0  # tiny weights + activation headroom


def test_mixed_precision_keeps_the_wan_vae_in_float32(tiny_wan_ti2v_dir: Path) -> None:
    import torch

    from pipeline.backends.diffusion import DiffusionBackend

    backend = DiffusionBackend(str(tiny_wan_ti2v_dir), options=BackendOptions(dtype="bfloat16"))
    assert (
        backend.pipe.transformer.dtype == torch.bfloat16 and backend.pipe.vae.dtype == torch.float32
    )
    frames = backend.render(photo(64, 64), backend.plan(request(), (64, 64)), request())
    assert frames.shape == (17, 64, 64, 3)
    backend.close()


# --- hub ids, offline ----------------------------------------------------------------------


def _fake_hub_cache(cache: Path, repo_id: str, files: Path) -> None:
    """Lay out `files` as the local hub cache would after `huggingface-cli download`."""
    revision = "0" * 40
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(files, repo / "snapshots" / revision)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)


def test_cached_hub_id_loads_offline(tiny_ltx_dir: Path, tmp_path: Path, monkeypatch) -> None:
    from pipeline.backends.diffusion import DiffusionBackend
    from pipeline.backends.hub import is_cached
    from pipeline.backends.source import resolve

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    _fake_hub_cache(tmp_path, "tiny-org/tiny-ltx", tiny_ltx_dir)
    assert is_cached("tiny-org/tiny-ltx")
    source = resolve("tiny-org/tiny-ltx")
    assert not source.is_local and source.local_files_only and source.family == "ltx"
    backend = DiffusionBackend(source)
    assert backend.render(photo(64, 64), backend.plan(request(), (64, 64)), request()).shape == (
        9,
        64,
        64,
        3,
    )


def test_a_preset_describes_itself_with_its_card(
    tiny_svd_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    from pipeline.backends.diffusion import DiffusionBackend

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    _fake_hub_cache(tmp_path, PRESETS["svd"].repo_id, tiny_svd_dir)
    info = DiffusionBackend("svd", load=False).info
    card = CARDS["svd"]
    assert (info.name, info.label, info.family, info.durations) == (
        "svd",
        card.label,
        "svd",
        card.durations,
    )
    assert info.is_ai and not info.supports_prompt and info.supports_extend


def test_uncached_hub_id_fails_fast_with_instructions(tmp_path: Path, monkeypatch) -> None:
    from pipeline.backends.source import resolve

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ModelError) as caught:
        resolve("someone/some-video-model")
    assert "huggingface-cli download someone/some-video-model" in caught.value.message
    assert "unreachable" in caught.value.message


def test_preset_not_downloaded_fails_fast(tmp_path: Path, monkeypatch) -> None:
    from pipeline.backends import load_backend

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(
        ModelError, match="huggingface-cli download Wan-AI/Wan2.2-TI2V-5B-Diffusers"
    ):
        load_backend("wan")


def test_missing_paths(tmp_path: Path) -> None:
    from pipeline.backends.source import resolve

    with pytest.raises(ModelError, match="does not exist"):
        resolve(str(tmp_path / "nope"))
    with pytest.raises(ModelError, match="Unknown model 'nope'"):
        resolve("nope")
    (tmp_path / "file.bin").write_bytes(b"x")
    with pytest.raises(ModelError, match="is a file"):
        resolve(str(tmp_path / "file.bin"))


# --- registry ------------------------------------------------------------------------------


def test_auto_without_cuda_is_the_camera_in_one_log_line(caplog) -> None:
    from pipeline.backends import load_backend

    with caplog.at_level(logging.INFO, logger="pipeline"):
        backend = load_backend("auto")
    assert backend.info.name == "camera" and backend.info.is_ai is False
    lines = [
        r.getMessage() for r in caplog.records if r.name == "pipeline" and "auto" in r.getMessage()
    ]
    assert len(lines) == 1 and "camera" in lines[0] and "no CUDA" in lines[0]


def test_load_backend_directory(tiny_svd_dir: Path) -> None:
    from pipeline.backends import Backend, load_backend

    backend = load_backend(str(tiny_svd_dir))
    assert isinstance(backend, Backend)
    assert (
        backend.info.family == "svd"
        and not backend.info.supports_prompt
        and backend.info.device == "cpu"
    )
    backend.close()


def test_available_models_on_a_cpu_machine(tmp_path: Path, monkeypatch, tiny_svd_dir: Path) -> None:
    from pipeline.backends import available_models

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    _fake_hub_cache(tmp_path, PRESETS["svd"].repo_id, tiny_svd_dir)
    rows = {row.name: row for row in available_models()}
    assert set(rows) == {"camera", *PRESETS}
    assert rows["camera"].runnable and not rows["camera"].is_ai
    assert all(rows[name].label == CARDS[name].label for name in rows)
    assert rows["svd"].downloaded and not rows["ltx"].downloaded
    for name in PRESETS:
        assert not rows[name].runnable and "CUDA" in rows[name].note
    assert rows["ltx"].note == "needs a CUDA GPU; not downloaded (python -m pipeline download ltx)"


@pytest.mark.parametrize("saved_as", ["LTXConditionPipeline", "LTXImageToVideoPipeline"])
def test_an_ltx_directory_renders_at_its_default_settings(
    tiny_ltx_dir: Path, tmp_path: Path, saved_as: str
) -> None:
    """The distilled schedule (8 custom timesteps) is what a member gets without --steps; a
    0.9.x directory saved as LTXImageToVideoPipeline, which builds its own sigmas too, must
    still render (it is loaded with LTXConditionPipeline)."""
    import json
    import shutil

    from pipeline.backends.diffusion import DiffusionBackend

    directory = tmp_path / saved_as
    shutil.copytree(tiny_ltx_dir, directory)
    index = json.loads((directory / "model_index.json").read_text())
    index["_class_name"] = saved_as
    (directory / "model_index.json").write_text(json.dumps(index))
    backend = DiffusionBackend(str(directory))
    ask = request(steps=None)
    plan = backend.plan(ask, (64, 64))
    assert plan.timesteps and plan.steps == len(plan.timesteps)
    frames = backend.render(photo(64, 64), plan, ask)
    assert frames.shape[1:] == (64, 64, 3) and type(backend.pipe).__name__ == "LTXConditionPipeline"
    backend.close()


def test_compile_beside_the_first_block_cache_does_not_demand_a_full_graph(
    tiny_wan_ti2v_dir: Path,
) -> None:
    """The cache's hook is compiler-disabled: a fullgraph compile fails at the first denoiser
    forward of every job (shown here with the eager backend on the CPU); the backend's own
    choice renders. Group offload's hooks are the same case."""
    import dataclasses

    import torch

    from pipeline.backends.diffusion import DiffusionBackend, denoisers
    from pipeline.backends.speedups.compile import (
        apply_regional_compile,
        compile_config,
    )

    assert compile_config(cache=False, offload="none").fullgraph
    assert not compile_config(cache=False, offload="group").fullgraph
    outcomes = {}
    for fullgraph in (True, None):
        backend = DiffusionBackend(str(tiny_wan_ti2v_dir), options=BackendOptions(cache=True))
        chosen = backend.compile_config()
        config = dataclasses.replace(
            chosen, fullgraph=chosen.fullgraph if fullgraph is None else fullgraph,
            backend="eager", cuda_only=False,
        )
        apply_regional_compile(denoisers(backend.pipe), torch.device("cpu"), config)
        try:
            frames = backend.render(photo(64, 64), backend.plan(request(), (64, 64)), request())
            outcomes[config.fullgraph] = frames.shape
        except Exception as exc:  # noqa: BLE001 - the defect being shown
            outcomes[config.fullgraph] = type(exc).__name__
        backend.close()
    assert outcomes == {True: "Unsupported", False: (17, 64, 64, 3)}


@pytest.mark.parametrize(
    ("capability", "expected"),
    [((7, 0), "float16"), ((7, 5), "float16"), ((8, 0), "bfloat16"), ((9, 0), "bfloat16")],
)
def test_bf16_only_where_the_card_has_it(
    monkeypatch: pytest.MonkeyPatch, capability: tuple[int, int], expected: str
) -> None:
    """V100 (7.0) and T4 (7.5) report bf16 as supported (emulated, slow): they get float16."""
    import torch

    from pipeline.backends.placement import choose_dtype

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    dtype = choose_dtype(BackendOptions(), PRESETS["ltx"], torch.device("cuda"))
    assert dtype == getattr(torch, expected)


def test_a_model_without_attention_dispatch_says_it_runs_sdpa(tiny_svd_dir: Path) -> None:
    """SVD's UNet ignores attention backends: the backend must not claim a kernel it never
    runs (operators read it in the logs and /queue)."""
    from pipeline.backends.diffusion import DiffusionBackend

    backend = DiffusionBackend(str(tiny_svd_dir), options=BackendOptions(attention="_native_math"))
    assert backend.attention == "native"
    backend.close()


def test_group_offload_keeps_the_vae_whole_and_renders(tiny_svd_dir: Path) -> None:
    """C5/C9: streamed, SVD's VAE would reload its stored half-precision weights over the
    float32 copy the pipeline upcasts it to, and keep tracker hooks nobody removes; it stays
    whole on the device while the denoiser and encoders are streamed."""
    import torch
    from diffusers.hooks import HookRegistry

    from pipeline.backends import placement
    from pipeline.backends.diffusion import DiffusionBackend

    def group_hooked(module: torch.nn.Module) -> bool:
        return any(
            HookRegistry.check_if_exists_or_initialize(m).get_hook("group_offloading") is not None
            for m in module.modules()
            if hasattr(m, "_diffusers_hook")
        )

    backend = DiffusionBackend(str(tiny_svd_dir))
    pipe = backend.load()
    placement.apply_offload(pipe, placement.OffloadConfig(torch.device("cpu"), "group"))
    assert group_hooked(pipe.unet) and not group_hooked(pipe.vae)
    frames = backend.render(photo(64, 64), backend.plan(request(), (64, 64)), request())
    assert frames.shape[1:] == (64, 64, 3) and np.isfinite(frames).all()
    backend.close()


def test_dropping_a_model_frees_the_pinned_host_memory_too(monkeypatch) -> None:
    """C10: `torch.cuda.empty_cache` frees device blocks only; the pinned host memory that
    offloading staged weights in must be released as well."""
    import torch

    from pipeline.backends.placement import free_device_memory

    calls: list[str] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: calls.append("device"))
    monkeypatch.setattr(torch.accelerator, "empty_host_cache", lambda: calls.append("host"))
    free_device_memory()
    assert calls == ["device", "host"]


def test_out_of_memory_at_load_frees_only_once_the_pipeline_is_unreachable(
    tiny_ltx_dir: Path, monkeypatch
) -> None:
    """C11: memory freed while the half-placed pipeline is still referenced (by the handler's
    exception frames) stays "used", and the next placement picks a slower offload."""
    import gc
    import weakref

    import torch

    from contract import OutOfMemory
    from pipeline.backends import placement
    from pipeline.backends.diffusion import DiffusionBackend

    seen: dict[str, Any] = {}

    def place_out_of_memory(pipe: Any, config: Any) -> None:
        seen["pipe"] = weakref.ref(pipe)
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    def free() -> None:
        gc.collect()
        seen["alive_when_freed"] = seen["pipe"]() is not None

    monkeypatch.setattr(placement, "apply_offload", place_out_of_memory)
    monkeypatch.setattr(placement, "free_device_memory", free)
    with pytest.raises(OutOfMemory, match="not have enough free memory"):
        DiffusionBackend(str(tiny_ltx_dir)).load()
    assert seen["alive_when_freed"] is False


def test_a_speed_up_that_fails_here_is_dropped_at_load_not_at_every_job(
    tiny_wan_ti2v_dir: Path, caplog
) -> None:
    """PyTorch's cuDNN attention can be set on any machine but runs only on CUDA: set at load,
    it would fail every job. The warm-up render at load drops it, says so once, and proves
    and keeps the first-block cache."""
    from pipeline.backends.diffusion import DiffusionBackend

    options = BackendOptions(attention="_native_cudnn", cache=True)
    with caplog.at_level(logging.WARNING, logger="pipeline"):
        backend = DiffusionBackend(str(tiny_wan_ti2v_dir), options=options)
        backend.load()
    assert "attention kernel _native_cudnn dropped" in caplog.text
    assert "first-block cache dropped" not in caplog.text
    assert backend.attention == "native"
    assert set(_attention_backends(backend.pipe.transformer).values()) == {None}
    assert backend.pipe.transformer.is_cache_enabled
    plan = backend.plan(request(steps=2), (64, 64))
    assert backend.render(photo(64, 64), plan, request(steps=2)).shape == (17, 64, 64, 3)
    backend.close()


def test_a_distilled_preset_ignores_the_cache_with_one_line(tiny_ltx_dir: Path, caplog) -> None:
    """Eight distilled steps each change the picture a lot: a cache would skip the steps
    that matter, so CACHE=true is ignored there (and said once), and kept on a 40-step one."""
    from pipeline.backends.diffusion import DiffusionBackend

    with caplog.at_level(logging.INFO, logger="pipeline"):
        backend = DiffusionBackend(str(tiny_ltx_dir), options=BackendOptions(cache=True))
    lines = [r.getMessage() for r in caplog.records if "CACHE=true ignored" in r.getMessage()]
    assert len(lines) == 1 and "8 steps is a distilled schedule" in lines[0]
    assert not backend.pipe.transformer.is_cache_enabled
    backend.close()


def test_auto_attention_takes_a_cached_hub_kernel_only_where_it_runs(tmp_path: Path, monkeypatch) -> None:
    """FlashAttention 3 and SageAttention have no PyPI wheels: "auto" uses diffusers' hub
    kernels when one is already in the local hub cache (never a download at job time), each on
    the GPUs it runs on, an installed FlashAttention before them, else SDPA."""
    from pipeline.backends.speedups.attention import _kernel_cached, auto_attention

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    assert not _kernel_cached("kernels-community/flash-attn3")
    (tmp_path / "models--kernels-community--flash-attn3" / "snapshots" / "abc").mkdir(parents=True)
    assert _kernel_cached("kernels-community/flash-attn3")

    def pick(capability, installed=(), hub=True, cached=("kernels-community/flash-attn3",)):
        return auto_attention(capability, installed=set(installed), hub_kernels=hub,
                              cached=lambda repo: repo in cached)

    hopper, ampere, ada, turing = (9, 0), (8, 0), (8, 9), (7, 5)
    assert pick(hopper, installed=("_flash_3",)) == "_flash_3"
    assert pick(hopper) == "_flash_3_hub"
    assert pick(hopper, hub=False) is None  # the `kernels` package is not installed
    assert pick(ampere) is None  # FlashAttention 3 needs Hopper
    both = ("kernels-community/flash-attn3", "SageAttention/sage-attention")
    assert pick(ada, cached=both) == "sage_hub" and pick(hopper, cached=both) == "_flash_3_hub"
    assert pick(ampere, installed=("flash",), cached=()) == "flash"
    assert pick(turing, installed=("flash",), cached=both) is None
