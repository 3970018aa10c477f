"""The memory planner: footprints that match the configs, a ladder that picks as documented,
and the worker following it.

The committed footprints (pipeline/memory/footprints.json, written by ``python -m bench
memory``) are recounted here from the full-size configs on the `meta` device, so they cannot
drift from pipeline/configs/; the placements for the cards people own are checked against a
table worked out by hand from the documented rules.
"""

# ruff: noqa: F811  (pytest fixtures imported from tiny_models are "redefined" as arguments)
from __future__ import annotations

import json

import pytest
from tiny_models import hub_snapshot, tiny_wan_a14b_dir, write_wan_gguf, write_wan_lora  # noqa: F401

from bench.memory import LiveTensors, fp8_bytes, peak_bytes, quantizable_params
from bench.random_weights import CONFIGS, build_pipeline
from contract import BackendOptions, ModelError
from pipeline.memory import GIB, LADDER, Tier, footprint_for, need_for, plan
from pipeline.memory.machine import Machine
from pipeline.memory.planner import GPU_RESERVE, HOST_BASE, stored_bytes
from pipeline.presets import PRESETS

COUNTED = [name for name, preset in PRESETS.items() if preset.configs]


def test_every_preset_has_configs_and_a_footprint() -> None:
    assert COUNTED == list(PRESETS)
    for name in PRESETS:
        footprint = footprint_for(name)
        assert footprint is not None and footprint.configs == PRESETS[name].configs, name


@pytest.mark.parametrize("folder", sorted({PRESETS[n].configs for n in COUNTED}))
def test_stored_weight_bytes_are_the_configs_counted_on_meta(folder: str) -> None:
    """Exact: every component built from its config on `meta` in the dtype the preset runs it
    in has the stored bytes, largest leaf, fp8 bytes and GGUF-quantizable parameters."""
    import torch

    from bench.memory import _tensor_bytes, largest_leaf

    for name in [n for n in COUNTED if PRESETS[n].configs == folder]:
        preset = PRESETS[name]
        pipe = build_pipeline(
            CONFIGS / folder, device="meta", dtype=getattr(torch, preset.dtype),
            fp32_components=preset.fp32_components,
        )
        for stored in footprint_for(name).components:  # type: ignore[union-attr]
            module = getattr(pipe, stored.name)
            assert stored.weight_bytes == _tensor_bytes(module), (name, stored.name)
            assert stored.largest_leaf_bytes == largest_leaf(module), (name, stored.name)
            if stored.role == "denoiser":
                assert stored.fp8_bytes == fp8_bytes(module)
                assert stored.quantizable_params == quantizable_params(module)


def test_published_sizes_check_the_counts() -> None:
    """Anchors outside our own code: the Wan A14B experts are 14,288,901,184 parameters each
    (pipeline/configs/SOURCES.md), so 28.58 GB in bf16; LTX 2B's transformer 1,923,385,472."""
    wan = {c.name: c for c in footprint_for("wan-14b").components}  # type: ignore[union-attr]
    assert wan["transformer"].weight_bytes - 2 * 14_288_901_184 < 2 * 10**6  # + a few buffers
    assert wan["transformer"].weight_bytes >= 2 * 14_288_901_184
    ltx = {c.name: c for c in footprint_for("ltx-2b").components}  # type: ignore[union-attr]
    assert ltx["transformer"].weight_bytes >= 2 * 1_923_385_472
    # LTX-2.3: the published checkpoint's 5,947 tensors are these components' (SOURCES.md); its
    # transformer is 18,988,838,144 parameters and the "22B" is transformer plus connectors.
    ltx2 = {c.name: c for c in footprint_for("ltx2").components}  # type: ignore[union-attr]
    assert ltx2["transformer"].weight_bytes == 2 * 18_988_838_144
    assert ltx2["transformer"].weight_bytes + ltx2["connectors"].weight_bytes == 2 * 22_161_065_728
    assert ltx2["text_encoder"].role == "text_encoder" and ltx2["connectors"].role == "text_connector"
    # fp8 storage halves what it casts: the A14B expert's linear layers are nearly all of it.
    assert 0.5 < wan["transformer"].fp8_bytes / wan["transformer"].weight_bytes < 0.52  # type: ignore[operator]


def test_the_live_tensor_counter_is_exact_on_a_known_graph() -> None:
    """x is an input (not counted); a and b are alive together (2 × 4 KiB), then a dies and
    c joins b: the peak is 8 KiB, and views of an input add nothing."""
    import torch

    x = torch.empty(1024, device="meta")

    def work() -> torch.Tensor:
        a = x * 2
        b = a * 3
        del a
        c = b * 4
        return c + x.view(32, 32).t()[0, 0]

    assert peak_bytes(work) == 3 * 4096  # b, c and the sum; the transposed element is a view
    tracker = LiveTensors()
    with tracker.mode:
        y = x.view(2, 512)
    assert tracker.peak == 0 and y.shape == (2, 512)


def test_a_stored_activation_peak_is_recounted() -> None:
    """The LTX 2B denoiser's peak at the default clip, recounted from the configs."""
    import torch

    from bench.flops import stages
    from bench.memory import default_clip

    preset = PRESETS["ltx-2b"]
    pipe = build_pipeline(CONFIGS / "ltx-2b", device="meta", dtype=torch.bfloat16)
    width, height, frames = default_clip(preset)
    work = stages(pipe, "ltx", width, height, frames, torch.bfloat16)
    stored = {c.name: c for c in footprint_for("ltx-2b").components}  # type: ignore[union-attr]
    assert peak_bytes(work.denoiser) == stored["transformer"].activation_bytes
    assert footprint_for("ltx-2b").clip == f"{width}×{height}, {frames} frames"  # type: ignore[union-attr]


def test_needs_follow_the_documented_rules() -> None:
    """wan-14b-fast worked by hand from its footprint: resident is every weight plus the
    largest peak; model offload one component (the fp8 expert) plus its peak; group offload the
    VAE, two of the largest leaves, the largest peak; host RAM as documented."""
    footprint = footprint_for("wan-14b-fast")
    assert footprint is not None
    parts = {c.name: c for c in footprint.components}
    expert, vae, text = parts["transformer"], parts["vae"], parts["text_encoder"]
    weights = sum(c.weight_bytes for c in footprint.components)

    resident = need_for(footprint, Tier("bf16", "none"))
    largest = max(c.activation_bytes for c in footprint.components)
    assert resident.gpu_bytes == weights + largest + GPU_RESERVE
    assert resident.host_bytes == expert.weight_bytes + HOST_BASE

    model = need_for(footprint, Tier("fp8", "model"))
    fp8_weights = 2 * expert.fp8_bytes + vae.weight_bytes + text.weight_bytes  # type: ignore[operator]
    assert model.gpu_bytes == max(
        expert.fp8_bytes + expert.activation_bytes,  # type: ignore[operator]
        text.weight_bytes + text.activation_bytes,
        vae.weight_bytes + vae.tiled_activation_bytes,  # type: ignore[operator]
    ) + GPU_RESERVE
    assert model.host_bytes == fp8_weights + HOST_BASE

    group = need_for(footprint, Tier("bf16", "group"))
    leaf = max(c.largest_leaf_bytes for c in footprint.components if c.role != "vae")
    peak = max(c.decode_activation_bytes for c in footprint.components)
    assert group.gpu_bytes == vae.weight_bytes + 2 * leaf + peak + GPU_RESERVE
    assert group.host_bytes == 2 * (weights - vae.weight_bytes) + HOST_BASE

    q4 = stored_bytes(expert, "Q4_K_M")
    assert q4 == int(expert.quantizable_params * 5.4 / 8 + expert.weight_bytes - 2 * expert.quantizable_params)
    assert 8.5 * GIB < q4 < 10.5 * GIB  # the published Q4_K_M experts are about 9.6 GB


# The tiers for the cards people own, worked out from the footprints by the documented rules
# (RAM GB -> one entry per 8, 12, 16, 24, 48, 80 GB card; None: nothing fits). For instance
# ltx-2b holds 14.8 GiB of weights (8.9 of them the T5 encoder): model offload keeps them all
# in RAM (+4 GiB for the process), too much for 16 GB, and needs the T5 plus its peak on the
# GPU (10.4 GiB with the reserve), too much for 8 GB, where group offload streams it instead.
# The A14B pair: fp8 experts (13.5 GiB each) under model offload fit 24 GB with 64 GB of RAM,
# Q5_K_M experts 16 GB, and only Q4_K_M experts streamed by group offload fit 12 GB; on 8 GB
# the UMT5 encoder's 2 GiB embedding (streamed whole, twice) no longer fits beside them, so
# the encoder runs on the CPU. With 16 GB of RAM ltx-2b on 12 GB moves its T5 to the CPU too.
EXPECTED: dict[str, dict[int, list[tuple[str, str, bool] | None]]] = {
    "ltx-2b": {
        16: [None, ("fp8", "none", True), ("fp8", "none", True), ("bf16", "none", False), ("bf16", "none", False), ("bf16", "none", False)],
        32: [("bf16", "group", False), ("bf16", "model", False), ("bf16", "model", False), ("bf16", "none", False), ("bf16", "none", False), ("bf16", "none", False)],
        64: [("bf16", "group", False), ("bf16", "model", False), ("bf16", "model", False), ("bf16", "none", False), ("bf16", "none", False), ("bf16", "none", False)],
    },
    "wan-14b-fast": {
        16: [None, None, None, None, ("Q5_K_M", "none", False), ("Q5_K_M", "none", False)],
        32: [None, None, None, None, ("fp8", "none", False), ("bf16", "none", False)],
        64: [("Q5_K_M", "group", True), ("Q4_K_M", "group", False), ("Q5_K_M", "model", False), ("fp8", "model", False), ("fp8", "none", False), ("bf16", "none", False)],
    },
    # LTX-2.3: 65.7 GiB in bf16 (transformer 35.4, Gemma 3 22.7, connectors 5.9), no GGUF. Model
    # offload holds every weight in RAM: with 64 GB only the fp8 transformer (17.7 GiB) fits
    # there, and on 24 GB only with Gemma on the CPU (the fp8 transformer plus its peak is the
    # largest swap, 21.0 GiB); group offload's pinned copies need 76 GiB of RAM at least.
    "ltx2": {
        32: [None, None, None, None, None, ("fp8", "none", False)],
        64: [None, None, None, ("fp8", "model", True), ("fp8", "model", False), ("bf16", "none", False)],
        128: [("bf16", "group", True), ("fp8", "group", False), ("fp8", "group", False), ("fp8", "group", False), ("bf16", "model", False), ("bf16", "none", False)],
    },
}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_placements_for_the_cards_people_own(name: str) -> None:
    for ram, row in EXPECTED[name].items():
        got = []
        for vram in (8, 12, 16, 24, 48, 80):
            chosen = plan(name, vram_bytes=vram * GIB, ram_bytes=ram * GIB)
            tier = chosen.tier if chosen.runs else None
            got.append((tier.storage, tier.placement, tier.text_encoder_on_cpu) if tier else None)
        assert got == row, (name, ram)


def test_a_card_people_own_runs_an_ai_preset_at_8_and_12_gb() -> None:
    for vram in (8, 12):
        assert any(plan(name, vram_bytes=vram * GIB, ram_bytes=32 * GIB).runs for name in PRESETS)


def test_more_memory_never_makes_a_plan_slower() -> None:
    """Monotone: a bigger GPU or more RAM picks the same tier or an earlier (faster) one."""
    order = {tier: i for i, tier in enumerate(LADDER)}
    for name in PRESETS:
        for ram in (16, 32, 64, 128):
            previous = None
            for vram in (8, 12, 16, 24, 48, 80, 141):
                chosen = plan(name, vram_bytes=vram * GIB, ram_bytes=ram * GIB)
                if previous is not None and previous.runs:
                    assert chosen.runs and order[chosen.tier] <= order[previous.tier], (name, ram, vram)
                previous = chosen


def test_the_ladder_is_followed_fastest_first() -> None:
    """On an H200-class card everything is resident in bf16; each plan is the first tier of
    the ladder that fits, never a later one."""
    for name in PRESETS:
        assert plan(name, vram_bytes=141 * GIB, ram_bytes=256 * GIB).tier == Tier("bf16", "none")
    footprint = footprint_for("wan-14b")
    assert footprint is not None
    chosen = plan("wan-14b", vram_bytes=24 * GIB, ram_bytes=64 * GIB)
    for tier in LADDER[: LADDER.index(chosen.tier)]:
        need = need_for(footprint, tier)
        assert need.gpu_bytes > 24 * GIB or need.host_bytes > 64 * GIB, tier


def test_no_gpu_and_nothing_fits_are_one_line() -> None:
    none = plan("ltx", vram_bytes=0, ram_bytes=64 * GIB)
    assert not none.runs and none.reason == "needs a CUDA GPU"
    tiny = plan("wan-14b", vram_bytes=2 * GIB, ram_bytes=8 * GIB)
    assert not tiny.runs
    assert tiny.reason.startswith("does not fit: needs at least ~") and "\n" not in tiny.reason
    with pytest.raises(ModelError):
        tiny.tier  # noqa: B018


def test_the_worker_takes_the_plan_and_steps_down_after_running_out_of_memory() -> None:
    import torch

    from pipeline.backends.placement import choose_tier

    cuda = torch.device("cuda")
    preset = PRESETS["wan-14b-fast"]
    machine = lambda: Machine(24 * GIB, 64 * GIB)  # noqa: E731
    first, placed = choose_tier(BackendOptions(), preset, cuda, is_preset=True, label="Wan", machine=machine)
    expected = plan(preset, vram_bytes=24 * GIB, ram_bytes=64 * GIB).tier
    assert first == expected and placed
    retry, _ = choose_tier(
        BackendOptions(low_memory=True), preset, cuda, is_preset=True, label="Wan", machine=machine
    )
    footprint = footprint_for("wan-14b-fast")
    assert footprint is not None
    fitting = [
        need_for(footprint, t) for t in LADDER
        if plan(preset, vram_bytes=24 * GIB, ram_bytes=64 * GIB, allowed=[t]).runs
        and (not t.is_gguf or t.storage in preset.gguf.quants)  # type: ignore[union-attr]
    ]
    # The next fitting tier that needs less GPU memory than the one that ran out.
    assert retry == next(n.tier for n in fitting if n.gpu_bytes < fitting[0].gpu_bytes) != first
    # An operator's WEIGHTS narrows the ladder; on a CPU nothing is planned.
    forced, _ = choose_tier(
        BackendOptions(weights="fp8"), preset, cuda, is_preset=True, label="Wan", machine=machine
    )
    assert forced.storage == "fp8"
    assert choose_tier(BackendOptions(), preset, torch.device("cpu"), is_preset=True, label="Wan") == (Tier(), True)
    # A checkpoint that is not a preset has no footprint: fp8 as asked, placed by free VRAM.
    assert choose_tier(
        BackendOptions(weights="fp8"), preset, cuda, is_preset=False, label="x", machine=machine
    ) == (Tier("fp8", "none"), False)
    # GGUF weights only where the preset publishes them (never for a checkpoint of its own).
    for other, is_preset in ((PRESETS["ltx"], True), (preset, False)):
        with pytest.raises(ModelError, match=r"^X has no Q4_K_M GGUF files; set WEIGHTS to auto, bf16 or fp8\.$"):
            choose_tier(BackendOptions(weights="Q4_K_M"), other, cuda, is_preset=is_preset, label="X", machine=machine)
    # Both forced: the retry keeps them rather than refuse what the first attempt accepted.
    forced_both = BackendOptions(weights="bf16", offload="group", low_memory=True)
    assert choose_tier(forced_both, preset, cuda, is_preset=True, label="Wan", machine=machine) == (
        Tier("bf16", "group"), True,
    )
    with pytest.raises(ModelError, match=r"^Wan cannot run on this machine: it does not fit: needs at least"):
        choose_tier(
            BackendOptions(), preset, cuda, is_preset=True, label="Wan",
            machine=lambda: Machine(3 * GIB, 8 * GIB),
        )


def test_models_command_plans_for_a_described_card(capsys: pytest.CaptureFixture[str]) -> None:
    from pipeline.cli import main

    assert main(["models", "--vram", "8", "--ram", "32", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    ai = [row for row in rows.values() if row["is_ai"] and row["how"]]
    assert ai, rows
    for row in ai:
        assert row["gpu_peak_gib"] <= 8 and row["host_gib"] <= 32 and row["denoise_pflop"] > 0
    assert rows["wan-14b"]["how"] is None or rows["wan-14b"]["gpu_peak_gib"] <= 8
    assert main(["models", "--vram", "24"]) == 0
    text = capsys.readouterr().out
    assert text.splitlines()[0].split() == ["NAME", "RUNS", "HOW", "GPU", "PEAK", "PFLOP", "NOTE"]
    assert main(["models", "--vram", "lots"]) == 2
    assert "'lots' is not a number of GB" in capsys.readouterr().err


@pytest.fixture
def a14b_hub(tmp_path, monkeypatch: pytest.MonkeyPatch, tiny_wan_a14b_dir):
    """The tiny A14B pipeline as Wan-AI's repo in an offline hub cache, and its experts as
    QuantStack's Q8_0 GGUF files (original key layout) beside it."""
    import shutil

    from pipeline.backends.loader import load_pipeline
    from pipeline.backends.source import resolve

    cache = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    preset = PRESETS["wan-14b"]
    shutil.copytree(tiny_wan_a14b_dir, hub_snapshot(cache, preset.repo_id))
    import torch

    reference = load_pipeline(resolve(str(tiny_wan_a14b_dir)), torch.float32)
    quantized = hub_snapshot(cache, preset.gguf.repo)  # type: ignore[union-attr]
    for name, (_repo, filename) in preset.gguf.for_quant("Q8_0").items():  # type: ignore[union-attr]
        (quantized / filename).parent.mkdir(parents=True, exist_ok=True)
        write_wan_gguf(getattr(reference, name), quantized / filename)
    for seed, lora in enumerate(PRESETS["wan-14b-fast"].loras, start=1):  # the Lightning pair
        target = hub_snapshot(cache, lora.source) / lora.weight_name  # type: ignore[operator]
        target.parent.mkdir(parents=True, exist_ok=True)
        write_wan_lora(target, seed=seed)
    return cache


@pytest.mark.parametrize(
    ("name", "weights"), [("wan-14b", "Q8_0"), ("wan-14b", "fp8"), ("wan-14b-fast", "Q8_0")]
)
def test_a_preset_renders_with_the_weights_the_plan_names(a14b_hub, name: str, weights: str) -> None:
    """WEIGHTS=Q8_0 loads the preset's published GGUF experts from the hub cache; fp8 stores
    the experts in float8; both render the preset through the product's backend. A LoRA
    cannot be fused into quantized weights: the fast preset's Lightning pair stays on as
    adapters over the GGUF experts."""
    from diffusers.quantizers.gguf.utils import GGUFLinear
    from PIL import Image

    from contract import AnimateRequest
    from pipeline.backends.diffusion import DiffusionBackend

    backend = DiffusionBackend(name, options=BackendOptions(device="cpu", weights=weights))
    assert backend.tier == Tier(weights, "none")
    if name == "wan-14b-fast":
        assert [strength for _, strength in backend._kept] == [1.0, 1.0]
        assert set(backend.pipe.get_active_adapters()) == {adapter for adapter, _ in backend._kept}
    expert = backend.pipe.transformer_2
    if weights == "Q8_0":
        assert any(isinstance(m, GGUFLinear) for m in expert.modules())
    else:
        import torch

        assert expert.blocks[0].ffn.net[2].weight.dtype == torch.float8_e4m3fn
    request = AnimateRequest(image=b"-", prompt="a cat", seed=3, width=32, height=32, duration=0.3, fps=16, steps=2)
    plan_ = backend.plan(request, (32, 32))
    frames = backend.render(Image.new("RGB", (32, 32), (90, 140, 200)), plan_, request)
    assert frames.shape[1:] == (32, 32, 3) and frames.std() > 0
    backend.close()


def test_fp8_storage_that_fails_its_warm_up_is_dropped_at_load(
    a14b_hub, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """fp8 storage is a speed-up too (it lets the A14B experts fit a smaller card): where it
    breaks the denoiser (a card or build whose float8 casts fail), the warm-up render at load
    finds it, says so once, and the model loads again without it; the job renders. Before,
    every job failed."""
    import logging

    from PIL import Image

    from contract import AnimateRequest
    from pipeline.backends import diffusion

    applied = []

    def broken_fp8(pipe, config, *, compute_dtype):
        applied.append(True)

        def refuse(module, args, kwargs):
            raise RuntimeError("float8_e4m3fn is not supported by this device")

        pipe.transformer.register_forward_pre_hook(refuse, with_kwargs=True)

    monkeypatch.setattr(diffusion, "apply_fp8_storage", broken_fp8)
    monkeypatch.setattr(diffusion, "_AVOIDED", {})  # what this process learnt: this test's own
    with caplog.at_level(logging.WARNING, logger="pipeline"):
        backend = diffusion.DiffusionBackend("wan-14b", options=BackendOptions(device="cpu", weights="fp8"))
        # A later load of it in this worker (after an eviction, the low-memory retry) knows.
        diffusion.DiffusionBackend("wan-14b", options=BackendOptions(device="cpu", weights="fp8")).close()
    assert applied == [True]  # once: the second load plans without it
    lines = [r.getMessage() for r in caplog.records if "failed its warm-up render" in r.getMessage()]
    assert len(lines) == 1 and lines[0].startswith("fp8 weight storage failed its warm-up render on cpu")
    assert "float8_e4m3fn is not supported" in lines[0]
    assert backend.tier == Tier("bf16", "none")
    request = AnimateRequest(image=b"-", prompt="a cat", seed=3, width=32, height=32, duration=0.3, fps=16, steps=2)
    frames = backend.render(Image.new("RGB", (32, 32), (90, 140, 200)), backend.plan(request, (32, 32)), request)
    assert frames.shape[1:] == (32, 32, 3) and frames.std() > 0
    backend.close()


def test_a_warm_up_that_fails_without_fp8_too_does_not_blame_it(
    a14b_hub, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A model that fails its warm-up whatever its storage: fp8 is suspected first, the load
    without it fails alike, so fp8 is cleared again and the load fails with one sentence,
    instead of quietly ending on bf16 weights that may not even fit."""
    import logging

    from pipeline.backends import diffusion

    def broken(self):  # noqa: ANN001, ANN202
        raise RuntimeError("an unrelated bug in the pipeline")

    monkeypatch.setattr(diffusion.DiffusionBackend, "_warm_up_render", broken)
    monkeypatch.setattr(diffusion, "_AVOIDED", {})
    with caplog.at_level(logging.WARNING, logger="pipeline"), pytest.raises(ModelError) as caught:
        diffusion.DiffusionBackend("wan-14b", options=BackendOptions(device="cpu", weights="fp8"))
    assert caught.value.message == (
        "Wan 2.2 I2V A14B (quality) fails a two-step warm-up render on this machine "
        "(RuntimeError: an unrelated bug in the pipeline); see the worker's log."
    )
    assert diffusion._AVOIDED == {("wan-14b", "cpu"): set()}
    assert "fp8 weight storage failed its warm-up render" in caplog.text  # tried once


def test_the_plan_avoids_what_failed_its_warm_up() -> None:
    """After fp8 storage or an offload mode failed its warm-up render on this machine, no tier
    uses it: not the planner's, not an operator's OFFLOAD or WEIGHTS."""
    import torch

    from pipeline.backends.placement import choose_tier

    preset, cuda = PRESETS["wan-14b-fast"], torch.device("cuda")
    machine = lambda: Machine(24 * GIB, 64 * GIB)  # noqa: E731
    tier, _ = choose_tier(BackendOptions(), preset, cuda, is_preset=True, label="Wan", machine=machine)
    assert tier == Tier("fp8", "model")  # a 24 GB card: fp8 experts, one component at a time
    for avoid in ({"fp8"}, {"model"}, {"model", "fp8"}):
        other, placed = choose_tier(
            BackendOptions(), preset, cuda, is_preset=True, label="Wan", machine=machine,
            avoid=frozenset(avoid),
        )  # fmt: skip
        assert placed and other.placement not in avoid and other.storage not in avoid
        assert other == plan(
            preset, vram_bytes=24 * GIB, ram_bytes=64 * GIB,
            allowed=[t for t in LADDER if t.placement not in avoid and t.storage not in avoid],
        ).tier  # fmt: skip
    small = lambda: Machine(12 * GIB, 64 * GIB)  # noqa: E731  (only group offload fits 12 GB)
    with pytest.raises(ModelError, match=r"^Wan cannot run on this machine: it does not fit"):
        choose_tier(BackendOptions(), preset, cuda, is_preset=True, label="Wan", machine=small,
                    avoid=frozenset({"group"}))
    forced = BackendOptions(weights="fp8", offload="group")
    assert choose_tier(forced, preset, cuda, is_preset=True, label="Wan", machine=machine) == (
        Tier("fp8", "group"), True,
    )
    unforced, _ = choose_tier(
        forced, preset, cuda, is_preset=True, label="Wan", machine=machine, avoid=frozenset({"fp8"})
    )
    assert unforced.storage != "fp8" and unforced.placement == "group"
    assert choose_tier(
        BackendOptions(weights="fp8"), preset, torch.device("cpu"), is_preset=True, label="Wan",
        avoid=frozenset({"fp8"}),
    ) == (Tier("bf16", "none"), True)  # fmt: skip


def test_a_missing_gguf_file_is_one_line(a14b_hub) -> None:
    from pipeline.backends.diffusion import DiffusionBackend

    with pytest.raises(ModelError, match=r"^The GGUF file 'HighNoise/Wan2.2-I2V-A14B-HighNoise-Q4_K_M.gguf' of "):
        DiffusionBackend("wan-14b", options=BackendOptions(device="cpu", weights="Q4_K_M"))


def test_what_a_machine_downloads_follows_its_plan() -> None:
    """A 12 GB card with 64 GB of RAM runs the A14B pair as Q4_K_M GGUF experts: it fetches
    those two files and none of the repo's own expert weights; a machine without a GPU (or
    one asking for bf16) fetches the preset's own weights."""
    from pipeline.fetch import wanted_for_machine

    preset = PRESETS["wan-14b-fast"]
    wanted, why = wanted_for_machine(preset, Machine(12 * GIB, 64 * GIB))
    assert why == "planned as GGUF Q4_K_M, group offload"
    base, *exact = wanted
    assert base.repo_id == preset.repo_id and base.skip_weights_of == {"transformer", "transformer_2"}
    files = {(w.repo_id, f) for w in exact for f in w.files or ()}
    assert ("QuantStack/Wan2.2-I2V-A14B-GGUF", "HighNoise/Wan2.2-I2V-A14B-HighNoise-Q4_K_M.gguf") in files
    assert ("QuantStack/Wan2.2-I2V-A14B-GGUF", "LowNoise/Wan2.2-I2V-A14B-LowNoise-Q4_K_M.gguf") in files
    assert {lora.weight_name for lora in preset.loras} <= {f for _, f in files}
    cpu, why = wanted_for_machine(preset, Machine(0, 64 * GIB))
    assert cpu[0].skip_weights_of == frozenset() and why.startswith("no CUDA GPU")
    with pytest.raises(ValueError, match="ltx-2b has no Q8_0 GGUF files"):
        wanted_for_machine(PRESETS["ltx-2b"], Machine(8 * GIB, 32 * GIB), weights="Q8_0")


@pytest.mark.parametrize("kind", ["wan_ti2v", "ltx", "ltx2"])
def test_the_text_encoder_on_the_cpu_renders_the_same_clip(kind: str, tmp_path, monkeypatch) -> None:
    """The last tier: the encoder leaves the pipeline, prompts are encoded on the CPU by the
    pipeline's own encode_prompt and passed as embeddings; the clip is the one the whole
    pipeline renders with the same seed (Wan: 2 embeddings; LTX and LTX-2's Gemma: 4, with
    masks)."""
    import numpy as np
    from PIL import Image

    from contract import AnimateRequest
    from pipeline.backends import placement
    from pipeline.backends.diffusion import DiffusionBackend
    from tests.tiny_models import build

    directory = build(kind, tmp_path / kind)
    request = AnimateRequest(
        image=b"-", prompt="a cat", seed=5, width=64, height=64, duration=0.3, fps=16, steps=2,
        audio=False,
    )
    photo = Image.new("RGB", (64, 64), (90, 140, 200))

    def render() -> tuple[DiffusionBackend, np.ndarray]:
        backend = DiffusionBackend(str(directory), options=BackendOptions(device="cpu"))
        return backend, backend.render(photo, backend.plan(request, (64, 64)), request)

    whole, expected = render()
    assert whole.pipe.text_encoder is not None
    whole.close()
    monkeypatch.setattr(
        placement, "choose_tier", lambda *a, **k: (Tier("bf16", "none", text_encoder_on_cpu=True), True)
    )
    split, frames = render()
    assert split.pipe.text_encoder is None and split._text_encoder is not None
    assert frames.shape == expected.shape and np.abs(frames.astype(int) - expected.astype(int)).max() <= 1
    split.close()
