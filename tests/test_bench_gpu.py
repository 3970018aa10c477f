"""The GPU benchmark's own machinery, on a CPU.

Two halves: the committed full-size configs really describe the published models (built on the
`meta` device, so a 14B model costs nothing: parameter counts and FLOPs per step against
independent arithmetic), and the harness times plain diffusers against the project's path on
tiny pipelines built from configs by the same code, producing every figure it promises.
"""

# ruff: noqa: F811  (pytest fixtures imported from tiny_models are "redefined" as arguments)
from __future__ import annotations

import json
from pathlib import Path

import pytest
from tiny_models import tiny_ltx_dir, tiny_wan_a14b_dir  # noqa: F401

import bench.gpu
from bench.gpu import CASES, Case, DenoiserClock, measure_case, peak_flops
from bench.random_weights import build_pipeline, parameter_counts
from pipeline.presets import get_preset

# Published sizes (model cards): LTX-Video 2B ≈ 1.9 B; Wan 2.2 TI2V 5B ≈ 5 B; Wan 2.2 A14B = two
# ≈14 B experts; T5-XXL encoder ≈ 4.8 B; UMT5-XXL encoder ≈ 5.7 B (its 256k vocabulary).
EXPECTED_BILLIONS = {
    "ltx-2b": {"transformer": (1.85, 2.0), "text_encoder": (4.6, 4.9)},
    # LTX-2.3: the 22B are the transformer (19.0, audio stream included) and the connectors (3.2).
    "ltx2": {"transformer": (18.9, 19.1), "connectors": (3.1, 3.25), "text_encoder": (12.1, 12.3)},
    "wan-5b": {"transformer": (4.8, 5.2), "text_encoder": (5.5, 5.8)},
    "wan-14b": {
        "transformer": (13.8, 14.6),
        "transformer_2": (13.8, 14.6),
        "text_encoder": (5.5, 5.8),
    },
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_full_size_configs_build_the_published_models(name: str) -> None:
    case = CASES[name]
    preset = get_preset(case.preset)
    pipe = build_pipeline(case.configs, device="meta", fp32_components=preset.fp32_components)
    counts = parameter_counts(pipe)
    for component, (low, high) in EXPECTED_BILLIONS[name].items():
        assert low <= counts[component] / 1e9 <= high, (component, counts[component])
    assert type(pipe).__name__ == preset.pipeline_class
    if name == "wan-14b":
        assert pipe.config.boundary_ratio == pytest.approx(0.9)
    if name == "wan-5b":
        assert pipe.config.expand_timesteps and pipe.vae.config.z_dim == 48
    # The benchmark's size obeys the model's own rules (else the plan would silently change it).
    from pipeline.backends.families import family_for

    rules = family_for(preset.family).constraints(type(pipe).__name__, pipe, preset)
    assert case.width % rules.multiple == 0 and case.height % rules.multiple == 0
    assert (case.frames - 1) % rules.frame_step == 0


def test_ltx_2b_flops_per_step_match_the_arithmetic() -> None:
    """FLOPs counted by the harness's counter on the full-size LTX 2B at 768×512×121, against
    2·(params applied per token)·tokens + attention, worked out independently."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    case = CASES["ltx-2b"]
    pipe = build_pipeline(case.configs, device="meta")
    model = pipe.transformer
    config = model.config
    frames = (case.frames - 1) // 8 + 1
    height, width = case.height // 32, case.width // 32
    tokens, text = frames * height * width, 128
    with torch.device("meta"):
        inputs = dict(
            hidden_states=torch.empty(1, tokens, config.in_channels, dtype=torch.bfloat16),
            encoder_hidden_states=torch.empty(1, text, config.caption_channels, dtype=torch.bfloat16),
            timestep=torch.empty(1),
            encoder_attention_mask=torch.ones(1, text, dtype=torch.bfloat16),
        )
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(**inputs, num_frames=frames, height=height, width=width, return_dict=False)
    dim, layers = config.num_attention_heads * config.attention_head_dim, config.num_layers
    per_layer_token_params = 4 * dim * dim + 2 * dim * dim + 2 * 4 * dim * dim  # self-attn, cross q/o, MLP
    expected = (
        2 * layers * per_layer_token_params * tokens
        + 2 * layers * 2 * dim * dim * text  # cross-attention keys and values on the text
        + layers * 4 * dim * tokens * tokens  # self-attention scores and values
        + layers * 4 * dim * tokens * text  # cross-attention scores and values
    )
    assert counter.get_total_flops() == pytest.approx(expected, rel=0.03)
    assert 25e12 < expected < 35e12  # ≈ 29 TFLOP per step: 8 steps ≈ 0.24 PFLOP per clip


def test_peak_flops_table() -> None:
    assert peak_flops("NVIDIA H100 80GB HBM3") == 989e12
    assert peak_flops("NVIDIA H100 PCIe") == 756e12
    assert peak_flops("NVIDIA H200") == 989e12
    assert peak_flops("NVIDIA A100-SXM4-80GB") == 312e12
    assert peak_flops("Some Future GPU") is None


@pytest.mark.parametrize(
    ("kind", "preset", "frames", "fps", "passes"),
    [("ltx", "ltx", 9, 8, 1), ("a14b", "wan-14b", 5, 4, 2)],
)
def test_harness_times_plain_and_optimised_paths(
    kind: str,
    preset: str,
    frames: int,
    fps: int,
    passes: int,
    tiny_ltx_dir: Path,
    tiny_wan_a14b_dir: Path,
) -> None:
    """Tiny pipelines built from configs by the benchmark's builder, timed on the CPU: every
    promised figure appears, CFG's two passes are counted as one step, and --steps extrapolates."""
    import torch

    folder = tiny_ltx_dir if kind == "ltx" else tiny_wan_a14b_dir
    pipe = build_pipeline(folder, device="cpu", dtype=torch.float32)
    case = Case(f"tiny-{kind}", preset, folder, 64, 64, frames, fps, steps=4, target_s=600.0)
    figures = {f.name: f for f in measure_case(case, pipe, device="cpu", repeats=1, steps=2)}
    name = case.name
    for label in ("plain", "optimised"):
        clip, step = figures[f"{name}_{label}_s_per_clip"], figures[f"{name}_{label}_s_per_step"]
        assert clip.value > 0 and step.value > 0
        assert f"({2 * passes} forwards)" in step.detail  # 2 steps timed
        assert "2 steps timed, 4 extrapolated" in clip.detail
        assert figures[f"{name}_{label}_tflops"].value > 0  # no peak known for a CPU: no MFU
    assert figures[f"{name}_optimised_s_per_clip"].target == 600.0
    assert "attention native" in figures[f"{name}_optimised_s_per_clip"].detail
    speedup = figures[f"{name}_speedup"]
    assert speedup.value == pytest.approx(
        figures[f"{name}_plain_s_per_clip"].value / figures[f"{name}_optimised_s_per_clip"].value
    )
    assert speedup.target == 1.5 and speedup.higher_is_better


@pytest.mark.parametrize("kind", ["ltx", "wan_a14b"])
def test_takes_time_back_to_back_against_one_batched_call(
    kind: str, tiny_ltx_dir: Path, tiny_wan_a14b_dir: Path
) -> None:
    """Issue 15's measurement, ready for a GPU: N takes one after another (as the worker
    renders them) against one call with num_videos_per_prompt=N, both making N clips."""
    import torch

    from bench.gpu import measure_takes

    folder = tiny_ltx_dir if kind == "ltx" else tiny_wan_a14b_dir
    pipe = build_pipeline(folder, device="cpu", dtype=torch.float32)
    preset, frames, fps = ("ltx-2b", 9, 8) if kind == "ltx" else ("wan-14b", 5, 16)
    case = Case(f"tiny-{kind}", preset, folder, 64, 64, frames, fps, steps=4)
    (figure,) = measure_takes(case, pipe, device="cpu", takes=2, steps=2)
    assert figure.name == f"tiny-{kind}_takes2_batched_vs_back_to_back" and figure.value > 0
    assert "2 takes at 2 steps: back to back " in figure.detail and "batched " in figure.detail


def test_clock_counts_only_denoiser_forwards(tiny_wan_a14b_dir: Path) -> None:
    """Both Wan experts are timed; the FLOP count re-runs the first call without timing it."""
    import torch

    pipe = build_pipeline(tiny_wan_a14b_dir, device="cpu", dtype=torch.float32)
    clock = DenoiserClock(pipe)
    assert len(clock.modules) == 2
    from PIL import Image

    pipe(
        image=Image.new("RGB", (32, 32)),
        prompt="a cat",
        height=32,
        width=32,
        num_frames=5,
        num_inference_steps=3,
        guidance_scale=1.0,
        output_type="np",
    )
    assert len(clock.spans) == 3 and clock.seconds() > 0
    flops = clock.flops_per_forward()
    assert flops > 0 and len(clock.spans) == 3
    clock.remove()


def test_gpu_benchmark_on_a_machine_without_cuda_measures_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # also true on a GPU machine
    out = tmp_path / "gpu.json"
    assert bench.gpu.main(["--models", "ltx-2b", "--out", str(out)]) == 0
    assert "no CUDA GPU" in capsys.readouterr().err
    assert not out.exists()
    from bench.__main__ import default_benchmarks

    assert "gpu" not in default_benchmarks() and "camera" in default_benchmarks()


def test_result_files_are_json_with_the_machine() -> None:
    """The committed results say where they were measured."""
    results = sorted((Path(bench.gpu.__file__).parent / "results").glob("*.json"))
    assert results
    for path in results:
        saved = json.loads(path.read_text())
        assert saved["machine"]["cores"] and saved["figures"]
