"""`python -m pipeline download`: a fresh machine fetches exactly what a preset loads here,
through the real huggingface_hub code against a local stand-in for the hub, and the preset
then loads and renders offline — no hand download."""

# ruff: noqa: F811  (pytest fixtures imported from other test modules are "redefined" as arguments)
from __future__ import annotations

from pathlib import Path

import pytest
import tiny_models
from hub_server import HubServer
from test_downloads import hub  # noqa: F401  (the stand-in hub fixture)

from contract import AnimateRequest, BackendOptions
from pipeline.cli import main
from pipeline.presets import PRESETS

PRESET = PRESETS["ltx-2b"]


def serve_ltx_2b(hub: HubServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[str]]:
    """ltx-2b's two repos with tiny contents: the diffusers base repo (whose transformer and VAE
    weights the preset never loads) and the single-file checkpoint beside another big file."""
    model_dir = tiny_models.build("ltx_i2v", tmp_path_factory.mktemp("ltx-base"))
    base = {p.relative_to(model_dir).as_posix(): p.read_bytes() for p in model_dir.rglob("*") if p.is_file()}
    hub.add_repo(PRESET.repo_id, base)
    repo, filename = PRESET.single_file  # type: ignore[misc]
    single = tiny_models.write_ltx_single_file(model_dir, tmp_path_factory.mktemp("single") / filename)
    hub.add_repo(repo, {filename: single.read_bytes(), "ltxv-13b-0.9.8-dev.safetensors": b"\0" * 50_000})
    skipped = {
        name for name in base
        if name.split("/")[0] in ("transformer", "vae") and name.endswith(".safetensors")
    }
    return {"base": set(base) - skipped, "single": {filename}, "skipped": skipped}


def test_download_then_render_offline(
    hub: HubServer, tmp_path_factory, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    expected = serve_ltx_2b(hub, tmp_path_factory)
    assert main(["download", "ltx-2b", "--quiet"]) == 0
    assert capsys.readouterr().out.splitlines() == ["ltx-2b: downloaded"]
    fetched = hub.fetched()
    assert {f for r, f in fetched if r == PRESET.repo_id} == expected["base"]
    assert {f for r, f in fetched if r == PRESET.single_file[0]} == expected["single"]  # type: ignore[index]
    assert not expected["skipped"] & {f for _, f in fetched}

    hub.reset_log()
    assert main(["download", "ltx-2b", "--quiet"]) == 0
    assert hub.fetched() == []  # everything is already here

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from PIL import Image

    from pipeline.backends.diffusion import DiffusionBackend

    backend = DiffusionBackend("ltx-2b", options=BackendOptions(device="cpu"))
    request = AnimateRequest(image=b"-", prompt="a cat", seed=1, width=64, height=64, duration=0.3, fps=24, steps=2)
    frames = backend.render(Image.new("RGB", (64, 64), (90, 140, 200)), backend.plan(request, (64, 64)), request)
    assert frames.shape[1:] == (64, 64, 3) and frames.std() > 0
    backend.close()


def test_download_problems_are_one_line_and_exit_2(
    hub: HubServer, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    assert main(["download", "warp-9"]) == 2
    assert capsys.readouterr().err.strip().startswith("error: Unknown model 'warp-9'; choose one of:")
    assert main(["download", "ltx-2b", "--quiet"]) == 2  # the stand-in serves no such repo
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and PRESET.repo_id in err and "not found" in err
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["download", "ltx-2b", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "HF_HUB_OFFLINE" in err
    assert main(["download", "ltx-2b", "--weights", "Q8_0"]) == 2
    assert capsys.readouterr().err.strip() == "error: ltx-2b has no Q8_0 GGUF files; choose bf16, fp8 or auto."


def test_models_says_what_to_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["models", "--vram", "24", "--ram", "64"]) == 0
    line = next(row for row in capsys.readouterr().out.splitlines() if row.startswith("ltx-2b "))
    assert line.endswith("not downloaded (python -m pipeline download ltx-2b)")
