"""A small run of the benchmark runner, so the benchmarks cannot rot unnoticed.

The duty-cycle benchmark goes through the real dispatcher, Ray worker and encoder; here with a
3-job backlog instead of 20. The figures themselves are not asserted against their targets
(that is the benchmark's job on a quiet machine), only that they are measured and saved.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import bench.duty
from bench.__main__ import main


def test_runner_measures_and_saves_the_duty_cycle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(bench.duty, "JOBS", 3)
    out = tmp_path / "result.json"
    main(["duty", "--out", str(out)])
    saved = json.loads(out.read_text())
    assert saved["machine"]["cores"] and saved["machine"]["torch"]
    figures = {f["name"]: f for f in saved["figures"]["duty"]}
    duty = figures["model_duty_cycle"]
    assert 0 < duty["value"] <= 100 and duty["target"] == 97.0 and duty["unit"] == "%"
    assert figures["max_gap_between_renders"]["value"] >= figures["median_gap_between_renders"]["value"]
    assert "model_duty_cycle" in capsys.readouterr().out  # the printed table


def test_unknown_benchmark_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["warp-speed"])
    assert exit_info.value.code == 2
    assert "unknown benchmark warp-speed" in capsys.readouterr().err


def test_smoke_runs_on_the_cpu_and_reports_cuda_rows_as_skipped(tmp_path, capsys) -> None:
    """`python -m bench smoke` is ready for a GPU: here every row that needs CUDA is reported
    skipped (never passed) and the rest render, the timestep-conditioned LTX directory too."""
    import json

    from bench.smoke import main as smoke_main
    from bench.smoke import settings

    out = tmp_path / "smoke.json"
    assert smoke_main(["--families", "ltx_i2v,svd", "--out", str(out)]) == 0
    figures = {f["name"]: f for f in json.loads(out.read_text())["figures"]["smoke"]}
    cpu_rows = sum(not s.needs_cuda() for s in settings())
    for family in ("ltx_i2v", "svd"):
        row = figures[f"{family}: rows passed"]
        assert row["value"] == cpu_rows and row["met"], row
        assert f"{len(settings()) - cpu_rows} skipped (needs CUDA)" in row["detail"], row
    assert smoke_main(["--families", "ltx,warp"]) == 2
    assert "unknown family warp" in capsys.readouterr().err


def test_flops_counts_the_fast_wan_preset_as_a_twentieth_of_the_quality_one() -> None:
    """Exact counts on `meta` for the two Wan 2.2 A14B presets (same weights, same clip): the
    Lightning preset's 4 steps without CFG are 4/80 of the 40 CFG steps, under the 10 PFLOP
    promise, and the quality preset is the 134 PFLOP the README states."""
    from bench.flops import CLIPS, count, figures_for

    quality, fast = count(CLIPS["wan-14b"]), count(CLIPS["wan-14b-fast"])
    assert quality.denoiser_per_forward == fast.denoiser_per_forward  # the same model and clip
    assert (quality.steps, quality.forwards_per_step, fast.steps, fast.forwards_per_step) == (40, 2, 4, 1)
    assert fast.denoiser_per_clip * 20 == quality.denoiser_per_clip
    assert 134 < quality.denoiser_per_clip / 1e15 < 135
    # Each expert in bf16 is 14 B parameters × 2 bytes; the VAE is kept in float32.
    assert 26 < fast.weight_bytes["transformer"] / 2**30 < 27.5
    assert fast.weight_bytes["transformer"] == fast.weight_bytes["transformer_2"]
    figures = {f.name: f for f in figures_for(CLIPS["wan-14b-fast"], fast)}
    headline = figures["wan-14b-fast_denoise_pflop_per_clip"]
    assert headline.met and headline.value == pytest.approx(6.71, abs=0.01)
    assert "4 steps, no CFG" in headline.detail


def test_flops_counts_what_half_frames_saves_on_ltx_2b() -> None:
    """``python -m bench flops --half-frames``: ltx-2b's 5 s clip at 768×512 is 121 frames at
    24 fps; HALF_FRAMES renders 57 at 12 fps (LTX's 8k+1 rule) and RIFE draws the 56 between.
    Fewer frames count fewer FLOPs, and these are the figures the README states (denoising
    0.233 → 0.099 PFLOP, the whole clip 0.297 → 0.133 with RIFE)."""
    from bench.flops import CLIPS, at_frames, half_frames_of, main, run

    clip = CLIPS["ltx-2b"]
    half_clip, rate = half_frames_of(clip)
    assert (half_clip.frames, rate) == (57, 12)
    assert at_frames(clip, 57) == half_clip and at_frames(clip, 121) == clip
    with pytest.raises(ValueError, match="60 is not one of them \\(nearest: 57 or 65\\)"):
        at_frames(clip, 60)
    with pytest.raises(ValueError, match="HALF_FRAMES renders every frame of wan"):
        half_frames_of(CLIPS["wan"])

    figures = {f.name: f.value for f in run(["ltx-2b"], half_frames=True)}
    full, half = figures["ltx-2b_denoise_pflop_per_clip"], figures["ltx-2b_half_frames_denoise_pflop_per_clip"]
    assert half < full and (round(full, 3), round(half, 3)) == (0.233, 0.099)
    whole, whole_half = figures["ltx-2b_clip_pflop"], figures["ltx-2b_half_frames_clip_pflop"]
    assert (round(whole, 3), round(whole_half, 3)) == (0.297, 0.133)
    assert 0.015 < figures["ltx-2b_rife_tflop_per_drawn_frame"] < 0.018
    # A preset HALF_FRAMES does not apply to is one line and exit 2, before any counting.
    with pytest.raises(SystemExit) as exited:
        main(["wan", "--half-frames"])
    assert exited.value.code == 2

