"""Checkpoints published as one .safetensors in their original layout: the ``ltx-2b`` preset
(LTX-Video 0.9.8 2B distilled) takes its transformer and VAE from Lightricks' single file and
the rest from a diffusers-format repo, through the production loader and an offline hub cache.

A tiny LTX model written in LTX-Video's own key layout stands in for the 6 GB file.
"""

# ruff: noqa: F811  (pytest fixtures imported from tiny_models are "redefined" as arguments)

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from tiny_models import build, hub_snapshot, write_ltx_single_file

from contract import AnimateRequest, BackendOptions, ModelError
from pipeline.presets import PRESETS

PRESET = PRESETS["ltx-2b"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(a tiny LTX 0.9.x diffusers directory, its transformer and VAE as one original file)."""
    folder = build("ltx_i2v", tmp_path_factory.mktemp("ltx-base"))
    single = write_ltx_single_file(folder, tmp_path_factory.mktemp("ltx-file") / PRESET.single_file[1])
    return folder, single


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny: tuple[Path, Path]) -> Path:
    """The base repo in the cache holds configs, text encoder, tokenizer and scheduler but no
    transformer or VAE weights (they can only come from the single file); the single file is
    in the cache under Lightricks' repo id and file name."""
    folder, single = tiny
    cache = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    base = hub_snapshot(cache, PRESET.repo_id)
    shutil.copytree(folder, base)
    for component in ("transformer", "vae"):
        for weights in (base / component).glob("*.safetensors"):
            weights.unlink()
    repo, filename = PRESET.single_file
    target = hub_snapshot(cache, repo) / filename
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(single, target)
    return cache


def test_ltx_2b_loads_transformer_and_vae_from_the_single_file(hub: Path, tiny: tuple[Path, Path]) -> None:
    import diffusers
    from PIL import Image

    from pipeline.backends.diffusion import DiffusionBackend

    backend = DiffusionBackend("ltx-2b", options=BackendOptions(device="cpu"))
    pipe = backend.pipe
    assert type(pipe).__name__ == "LTXConditionPipeline"
    reference = diffusers.LTXConditionPipeline.from_pretrained(tiny[0])
    for name in ("transformer", "vae"):
        mine, theirs = getattr(pipe, name).state_dict(), getattr(reference, name).state_dict()
        assert mine.keys() == theirs.keys(), name
        assert all(torch.equal(mine[k], theirs[k]) for k in mine), name

    # The preset's own settings: 8 distilled timesteps, no guidance; a clip comes out.
    request = AnimateRequest(image=b"-", prompt="a cat", seed=7, width=64, height=64, duration=1.0, fps=8)
    plan = backend.plan(request, (64, 64))
    assert plan.timesteps == PRESET.default_timesteps and plan.guidance == 1.0
    frames = backend.render(Image.new("RGB", (64, 64), (90, 140, 200)), plan, request)
    assert frames.shape == (9, 64, 64, 3) and frames.std() > 0


def test_a_missing_single_file_is_one_line_naming_it(hub: Path) -> None:
    from pipeline.backends import available_models
    from pipeline.backends.diffusion import DiffusionBackend

    repo, filename = PRESET.single_file
    (hub_snapshot(hub, repo) / filename).unlink()
    with pytest.raises(ModelError) as caught:
        DiffusionBackend("ltx-2b", options=BackendOptions(device="cpu"))
    assert caught.value.message == (
        f"The checkpoint {filename!r} of {repo!r} is not downloaded and the Hugging Face hub is "
        f"unreachable (HF_HUB_OFFLINE is set); get it with `huggingface-cli download {repo} {filename}`."
    )
    row = next(r for r in available_models() if r.name == "ltx-2b")
    assert not row.downloaded and "python -m pipeline download ltx-2b" in row.note


def test_a_single_file_of_another_model_is_refused_in_one_line(hub: Path, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from pipeline.backends.diffusion import DiffusionBackend

    repo, filename = PRESET.single_file
    save_file({"model.diffusion_model.patchify_proj.weight": torch.zeros(4, 4)}, str(hub_snapshot(hub, repo) / filename))
    with pytest.raises(ModelError, match=rf"^Cannot load the transformer of '{filename}': .*huggingface-cli download {repo} {filename}"):
        DiffusionBackend("ltx-2b", options=BackendOptions(device="cpu"))
