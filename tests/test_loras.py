"""LoRAs through the production loader: the fast Wan 2.2 A14B preset with its Lightning pair
found in the hub cache and fused into the right experts, its 4-step schedule, operators'
LoRAs from the CLI, and one clear line for a LoRA that is missing or does not fit.

Tiny random-weight Wan A14B pipelines and LoRAs written in the published Lightning key
layout stand in for the real files; nothing is downloaded.
"""

# ruff: noqa: F811  (pytest fixtures imported from tiny_models are "redefined" as arguments)

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from tiny_models import (  # noqa: F401  (session fixtures; see tiny_models.py)
    hub_snapshot,
    tiny_wan_a14b_dir,
    tiny_wan_dir,
    write_wan_lora,
)

from contract import BackendOptions, LoraSpec, ModelError
from pipeline.presets import PRESETS

FAST = PRESETS["wan-14b-fast"]
HIGH, LOW = (spec.weight_name for spec in FAST.loras)


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_wan_a14b_dir: Path) -> Path:
    """An offline hub cache holding Wan 2.2 A14B (tiny) and the Lightning LoRA pair (random,
    in the published layout), under their real repo ids and file names."""
    cache = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    shutil.copytree(tiny_wan_a14b_dir, hub_snapshot(cache, FAST.repo_id))
    lightning = hub_snapshot(cache, FAST.loras[0].source)
    write_wan_lora(lightning / HIGH, seed=1)
    write_wan_lora(lightning / LOW, seed=2)
    return cache


def test_a_lora_is_written_repo_file_and_strength() -> None:
    spec = LoraSpec.parse(f"lightx2v/Wan2.2-Lightning:{HIGH}@0.75")
    assert (spec.source, spec.weight_name, spec.strength) == ("lightx2v/Wan2.2-Lightning", HIGH, 0.75)
    assert LoraSpec.parse("./loras/orbit.safetensors") == LoraSpec("./loras/orbit.safetensors")
    assert LoraSpec.parse("C:/loras/a.safetensors@-0.5").source == "C:/loras/a.safetensors"
    with pytest.raises(ValueError, match="outside -4 to 4"):
        LoraSpec.parse("a/b@9")


def test_the_fast_schedule_is_lightnings_and_splits_two_and_two(tiny_wan_a14b_dir: Path) -> None:
    """Lightning was distilled with Euler steps at t = 1000, 750, 500, 250 shifted by 5. The
    preset's scheduler, built by diffusers from the checkpoint's config, must land there, step
    as Euler does, and give each expert two of the four steps at the 0.9 boundary."""
    import diffusers

    base = diffusers.UniPCMultistepScheduler.from_pretrained(tiny_wan_a14b_dir / "scheduler")
    scheduler = getattr(diffusers, FAST.scheduler).from_config(base.config, **FAST.scheduler_config)
    scheduler.set_timesteps(FAST.steps)
    shift = FAST.scheduler_config["flow_shift"]
    trained = [shift * t / (1 + (shift - 1) * t) for t in (1.0, 0.75, 0.5, 0.25)]
    assert scheduler.sigmas[:-1].tolist() == pytest.approx(trained, abs=1e-3)
    boundary = 0.9 * scheduler.config.num_train_timesteps
    high = [t for t in scheduler.timesteps.tolist() if t >= boundary]
    assert len(high) == 2 and len(scheduler.timesteps) == 4

    torch.manual_seed(0)
    sample = euler = torch.randn(1, 16, 2, 4, 4)
    sigmas = scheduler.sigmas.tolist()
    for i, t in enumerate(scheduler.timesteps):
        sample = scheduler.step(torch.sin(sample * (i + 1)), t, sample).prev_sample
        euler = euler + (sigmas[i + 1] - sigmas[i]) * torch.sin(euler * (i + 1))
    assert torch.allclose(sample, euler, atol=1e-5)


def forward(transformer, seed: int = 3) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    hidden = torch.randn(1, 36, 2, 8, 8, generator=generator)
    text = torch.randn(1, 6, 32, generator=generator)
    with torch.no_grad():
        return transformer(hidden, timestep=torch.tensor([900]), encoder_hidden_states=text).sample


def test_the_fast_preset_loads_from_the_hub_cache_with_each_expert_fused(
    hub: Path, tiny_wan_a14b_dir: Path
) -> None:
    import diffusers

    from pipeline.backends.diffusion import DiffusionBackend
    from pipeline.backends.lora import load_adapters

    backend = DiffusionBackend("wan-14b-fast", options=BackendOptions(device="cpu"))
    pipe = backend.pipe
    assert type(pipe.scheduler).__name__ == "UniPCMultistepScheduler"
    assert pipe.scheduler.config.flow_shift == 5.0 and pipe.scheduler.config.solver_order == 1
    for denoiser in (pipe.transformer, pipe.transformer_2):
        assert not [name for name, _ in denoiser.named_parameters() if "lora" in name]

    base = diffusers.WanImageToVideoPipeline.from_pretrained(tiny_wan_a14b_dir)
    # Unfused, the same LoRAs as adapters give the same denoiser (fusing changes nothing but
    # speed), and each went into its own expert: the base model differs from both.
    unfused = diffusers.WanImageToVideoPipeline.from_pretrained(tiny_wan_a14b_dir)
    load_adapters(unfused, [LoraSpec(str(hub_snapshot(hub, FAST.loras[0].source)), HIGH)], prefix="a")
    load_adapters(
        unfused,
        [LoraSpec(str(hub_snapshot(hub, FAST.loras[0].source)), LOW, component="transformer_2")],
        prefix="b",
    )
    for name in ("transformer", "transformer_2"):
        fused_out = forward(getattr(pipe, name))
        assert torch.allclose(fused_out, forward(getattr(unfused, name)), atol=1e-4), name
        assert not torch.allclose(fused_out, forward(getattr(base, name)), atol=1e-3), name
    # The high-noise file went into the high-noise expert, not the other way round.
    assert not torch.allclose(forward(pipe.transformer), forward(unfused.transformer_2), atol=1e-3)

    # A render at the preset's own settings: 4 steps, no classifier-free guidance.
    from PIL import Image

    from contract import AnimateRequest

    request = AnimateRequest(
        image=b"not used by plan/render", prompt="a cat", seed=7, width=32, height=32,
        duration=1.0, fps=8,
    )
    plan = backend.plan(request, (32, 32))
    assert (plan.steps, plan.guidance) == (4, 1.0)
    frames = backend.render(Image.new("RGB", (32, 32), (90, 140, 200)), plan, request)
    assert frames.shape[1:] == (32, 32, 3) and frames.std() > 0


def test_a_missing_lora_names_the_file_and_how_to_get_it(hub: Path) -> None:
    from pipeline.backends.diffusion import DiffusionBackend

    (hub_snapshot(hub, FAST.loras[0].source) / LOW).unlink()
    with pytest.raises(ModelError) as caught:
        DiffusionBackend("wan-14b-fast", options=BackendOptions(device="cpu"))
    assert caught.value.message == (
        f"The LoRA {LOW!r} of 'lightx2v/Wan2.2-Lightning' is not downloaded and the Hugging "
        "Face hub is unreachable (HF_HUB_OFFLINE is set); get it with `huggingface-cli download "
        f"lightx2v/Wan2.2-Lightning {LOW}`."
    )


def test_a_lora_made_for_another_model_is_refused_in_one_line(
    tiny_wan_a14b_dir: Path, tiny_wan_dir: Path, tmp_path: Path
) -> None:
    from pipeline.backends.diffusion import DiffusionBackend

    wrong = write_wan_lora(tmp_path / "big.safetensors", seed=4, dim=48)
    options = BackendOptions(device="cpu", loras=(("*", (LoraSpec(str(wrong)),)),))
    with pytest.raises(ModelError, match=r"^The LoRA .*big.safetensors does not fit this model \("):
        DiffusionBackend(str(tiny_wan_a14b_dir), options=options)
    low = write_wan_lora(tmp_path / "low.safetensors", seed=5)
    options = BackendOptions(
        device="cpu", loras=(("*", (LoraSpec(str(low), component="transformer_2"),)),)
    )
    with pytest.raises(ModelError, match="second denoiser .* which this model does not have"):
        DiffusionBackend(str(tiny_wan_dir), options=options)  # Wan 2.1: one transformer


def test_the_cli_fuses_an_operators_lora_and_refuses_a_missing_one(
    tiny_wan_a14b_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import av
    import numpy as np
    from PIL import Image

    from pipeline.cli import main

    photo = tmp_path / "photo.png"
    Image.new("RGB", (96, 64), (90, 140, 200)).save(photo)
    lora = write_wan_lora(tmp_path / "loras" / "style.safetensors", seed=6, scale=2.0)
    common = ["animate", str(photo), "--model", str(tiny_wan_a14b_dir), "--size", "32x32",
              "--steps", "2", "--duration", "1", "--fps", "8", "--seed", "7", "-q"]

    def frames(path: Path) -> np.ndarray:
        with av.open(str(path)) as container:
            return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])

    plain, styled = tmp_path / "plain.mp4", tmp_path / "styled.mp4"
    assert main([*common, "--out", str(plain)]) == 0
    assert main([*common, "--lora", f"{lora.parent}@1.5", "--out", str(styled)]) == 0
    assert frames(plain).shape == frames(styled).shape
    assert np.abs(frames(plain).astype(int) - frames(styled).astype(int)).mean() > 1

    capsys.readouterr()
    missing = tmp_path / "loras" / "nope.safetensors"
    assert main([*common, "--lora", str(missing), "--out", str(tmp_path / "x.mp4")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "does not exist on this machine" in err and str(missing) in err
    assert not (tmp_path / "x.mp4").exists()

    assert main(["animate", str(photo), "--model", "camera", "--lora", str(lora), "-q"]) == 2
    assert "The camera move has no AI model to put a LoRA into" in capsys.readouterr().err


def test_a_members_effect_applies_to_that_job_only(tiny_wan_a14b_dir: Path, tmp_path: Path) -> None:
    """Effects stay loaded as adapters: a job with one renders differently, the next job
    without it renders exactly as the plain model, and switching back gives the same clip."""
    import numpy as np
    from PIL import Image

    from contract import AnimateRequest, Effect
    from pipeline.backends.diffusion import DiffusionBackend

    high = write_wan_lora(tmp_path / "orbit" / "high.safetensors", seed=8, scale=2.0)
    low = write_wan_lora(tmp_path / "orbit" / "low.safetensors", seed=9, scale=2.0)
    orbit = Effect(
        "orbit", "360° orbit",
        (LoraSpec(str(high)), LoraSpec(str(low), strength=0.8, component="transformer_2")),
        prompt="orbit shot",
    )
    model = str(tiny_wan_a14b_dir)
    with_effects = DiffusionBackend(
        model, options=BackendOptions(device="cpu", effects=((model, (orbit,)),))
    )
    plain = DiffusionBackend(model, options=BackendOptions(device="cpu"))
    photo = Image.new("RGB", (48, 32), (90, 140, 200))

    def render(backend: DiffusionBackend, effect: str | None) -> np.ndarray:
        request = AnimateRequest(
            image=b"-", prompt="a cat", seed=7, width=32, height=32, duration=1.0, fps=8,
            steps=2, effect=effect,
        )
        plan = backend.plan(request, (48, 32))
        if effect:
            assert plan.prompt.endswith(" orbit shot")
        return backend.render(photo, plan, request)

    styled = render(with_effects, "orbit")
    after = render(with_effects, None)
    assert np.array_equal(after, render(plain, None))  # off again: exactly the plain model
    assert np.abs(styled.astype(int) - after.astype(int)).mean() > 1
    assert np.array_equal(render(with_effects, "orbit"), styled)
    with pytest.raises(ModelError, match="The effect 'sparkle' is not set up"):
        render(with_effects, "sparkle")
