"""Upscale 2× inside an LTX render: Lightricks' spatial latent upsampler between a base-size
pass and a short pass at twice the size (diffusers' two-stage flow), when its weights are
downloaded; Real-ESRGAN on the frames otherwise.

Stand-ins: the tiny LTX pipeline in the hub cache under the ``ltx`` preset's repo id, a tiny
random-weight ``LTXLatentUpsamplerModel`` saved in the published repo's layout
(``LTXLatentUpsamplePipeline.save_pretrained``: model_index.json, latent_upsampler/, vae/),
random Real-ESRGAN x2plus weights, and the local HTTP hub for the download. Everything is
loaded by the production code; clips are read back by a real decoder (PyAV).
"""

# ruff: noqa: F811  (pytest fixtures imported from tiny_models and test_downloads)
from __future__ import annotations

import logging
import shutil
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from hub_server import HubServer
from photos import photo_path
from test_downloads import hub  # noqa: F401
from tiny_models import (
    hub_snapshot,
    ltx_latent_upsampler,
    tiny_ltx_dir,  # noqa: F401
    write_ltx_spatial_upscaler,
)

from contract import (
    AnimateRequest,
    BackendOptions,
    FinishUnavailable,
    JobSpec,
    Progress,
    WorkerInfo,
)
from jobs import ClipSummary, Job, JobAction, JobStatus, NotSupported
from jobs.config import JobsConfig, Pricing
from jobs.service import JobService
from pipeline.cli import main
from pipeline.finish import RIFE, UPSCALER, FinishPlan, require_weights, support
from pipeline.presets import PRESETS

PHOTO = photo_path("chelsea")
LATENT = getattr(PRESETS["ltx"], "latent_upscale", None)  # None before this feature existed
UPSAMPLER_REPO = "Lightricks/ltxv-spatial-upscaler-0.9.7"
UPSAMPLER_FILES = ["latent_upsampler/config.json", "latent_upsampler/diffusion_pytorch_model.safetensors"]
TINY = {"prompt": "a cat turns its head", "seed": 7, "width": 32, "height": 32, "duration": 1.0, "fps": 8}
"""A 9-frame 32×32 clip of the tiny model: seconds on a CPU."""


@pytest.fixture(autouse=True)
def no_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    """No local weight overrides: each test says what it has."""
    for name in (RIFE.env, UPSCALER.env, "LTX_UPSCALER_WEIGHTS"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def upsampler_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny upsampler as Lightricks/ltxv-spatial-upscaler-0.9.7 publishes it."""
    return write_ltx_spatial_upscaler(tmp_path_factory.mktemp("ltx-upscaler"))


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_ltx_dir: Path) -> Path:
    """An offline hub cache holding the tiny LTX as the ``ltx`` preset's repo (no upsampler)."""
    cache = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    shutil.copytree(tiny_ltx_dir, hub_snapshot(cache, PRESETS["ltx"].repo_id))
    return cache


def add_upsampler(cache: Path, upsampler_repo: Path) -> None:
    """What `python -m pipeline download ltx-upscale` leaves in the cache."""
    snapshot = hub_snapshot(cache, UPSAMPLER_REPO)
    for name in UPSAMPLER_FILES:
        (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(upsampler_repo / name, snapshot / name)


def x2plus_file(path: Path) -> Path:
    """Random Real-ESRGAN x2plus weights as the hub's repackaging publishes them."""
    from safetensors.torch import save_file

    from pipeline.finish.upscale import x2plus_state_dict

    save_file(x2plus_state_dict(0), str(path))
    return path


def decoded(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(container.streams.video[0])])


def request(**changes: object) -> AnimateRequest:
    return AnimateRequest(image=PHOTO.read_bytes(), **{**TINY, **changes})  # type: ignore[arg-type]


# --- the weights as published ----------------------------------------------------------------


def test_the_upsampler_loads_from_the_published_layout_and_doubles_latents(
    upsampler_repo: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from diffusers import AutoencoderKLLTXVideo

    from pipeline.finish.latent import (
        load_latent_upsampler,
        upsample_latents,
        upsampler_dir,
    )

    assert LATENT is not None and PRESETS["ltx-2b"].latent_upscale is not None
    assert LATENT.repo_id == UPSAMPLER_REPO and list(LATENT.files) == UPSAMPLER_FILES
    with pytest.raises(FinishUnavailable, match="python -m pipeline download ltx-upscale"):
        upsampler_dir(LATENT)
    add_upsampler(cache, upsampler_repo)
    folder = upsampler_dir(LATENT)
    model = load_latent_upsampler(folder)
    reference = ltx_latent_upsampler()
    assert model.state_dict().keys() == reference.state_dict().keys()
    assert all(torch.equal(v, reference.state_dict()[k]) for k, v in model.state_dict().items())
    # A local copy of the whole repo (LTX_UPSCALER_WEIGHTS) is found the same way.
    monkeypatch.setenv("LTX_UPSCALER_WEIGHTS", str(upsampler_repo))
    assert upsampler_dir(LATENT) == upsampler_repo / "latent_upsampler"

    vae = AutoencoderKLLTXVideo.from_pretrained(str(upsampler_repo / "vae"))
    latents = torch.randn(1, 8, 3, 8, 12, generator=torch.Generator().manual_seed(0))
    doubled = upsample_latents(vae, model, latents, LATENT)
    assert doubled.shape == (1, 8, 3, 16, 24) and torch.isfinite(doubled).all()


def test_the_second_pass_runs_the_documented_schedule_one_pass_shorter(tiny_ltx_dir: Path) -> None:
    """diffusers' docs run timesteps 1000, 909, 725, 421, 0 at denoise_strength 0.999; the
    preset's 1000, 909, 725, 421 at 0.75 give the same latents with one transformer pass
    fewer (the docs' last step is at sigma 0, an Euler step of zero)."""
    from diffusers import LTXConditionPipeline
    from PIL import Image

    assert LATENT is not None and LATENT.refine_steps == 3
    pipe = LTXConditionPipeline.from_pretrained(str(tiny_ltx_dir))
    pipe.set_progress_bar_config(disable=True)
    start = torch.randn(1, 8, 3, 16, 16, generator=torch.Generator().manual_seed(1))

    def second_pass(timesteps: list[float], strength: float) -> tuple[torch.Tensor, list[float]]:
        seen: list[float] = []

        def count(pipeline: object, step: int, t: torch.Tensor, kwargs: dict) -> dict:
            seen.append(float(t))
            return kwargs

        out = pipe(
            image=Image.new("RGB", (64, 64), (200, 120, 40)), prompt="a cat", width=64, height=64,
            num_frames=9, timesteps=timesteps, denoise_strength=strength, latents=start.clone(),
            guidance_scale=1.0, image_cond_noise_scale=0.0, output_type="latent",
            generator=torch.Generator().manual_seed(2), callback_on_step_end=count,
        ).frames
        return out, seen

    documented, doc_steps = second_pass([1000, 909, 725, 421, 0], 0.999)
    ours, our_steps = second_pass(list(LATENT.timesteps), LATENT.denoise_strength)
    assert doc_steps == [909, 725, 421, 0] and our_steps == [909, 725, 421]
    assert torch.equal(documented, ours)


# --- through the production backend ------------------------------------------------------------


def test_an_ltx_clip_with_upscale_2_is_made_twice_the_size_by_the_latent_upsampler(
    cache: Path, upsampler_repo: Path, tmp_path: Path, capsys, caplog: pytest.LogCaptureFixture
) -> None:
    """Only the latent upsampler is downloaded (no Real-ESRGAN): the CLI accepts --upscale 2
    on ``ltx``, the render is 2× the base size and the member is told how."""
    add_upsampler(cache, upsampler_repo)
    out = tmp_path / "big.mp4"
    args = ["animate", str(PHOTO), "--model", "ltx", "--device", "cpu", "--size", "32x32",
            "--duration", "1", "--fps", "8", "--seed", "7", "--quiet", "--upscale", "2"]
    with caplog.at_level(logging.WARNING, logger="pipeline"):
        code = main([*args, "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    frames = decoded(out)
    assert frames.shape == (9, 64, 64, 3)
    from pipeline.finish.latent import NOTE

    assert f"note: {NOTE}" in caplog.messages


def test_the_backend_says_which_upscaler_and_falls_back_without_the_weights(
    cache: Path, upsampler_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One warm ``ltx`` backend: without the upsampler Real-ESRGAN doubles the frames after
    the render; once it is downloaded, the next job doubles inside the render (8 + 3 steps,
    no finish step), and the frames stay 2× the plan's size either way."""
    from pipeline.animate import animate
    from pipeline.backends.diffusion import DiffusionBackend

    monkeypatch.setenv(UPSCALER.env, str(x2plus_file(tmp_path / "x2.safetensors")))
    backend = DiffusionBackend("ltx", options=BackendOptions(device="cpu"))

    events: list[Progress] = []
    plan = backend.plan(request(upscale=2), (64, 64))
    assert getattr(plan, "upscaled", 1) == 1 and plan.source_size is None
    pixels = animate(request(upscale=2), backend, emit=events.append)
    assert (pixels.width, pixels.height) == (64, 64) and not pixels.warnings
    assert any(e.stage == "finish" and e.message == "Upscaling" for e in events)

    add_upsampler(cache, upsampler_repo)
    events.clear()
    plan = backend.plan(request(upscale=2), (64, 64))
    assert (plan.width, plan.height, plan.source_size) == (32, 32, (64, 64))
    assert getattr(plan, "upscaled", 1) == 2
    latent = animate(request(upscale=2), backend, emit=events.append)
    from pipeline.finish.latent import NOTE

    assert (latent.width, latent.height, latent.frames) == (64, 64, 9) and NOTE in latent.warnings
    assert not any(e.stage == "finish" for e in events)
    steps = [(e.step, e.total) for e in events if e.stage == "denoise" and not e.message]
    assert steps == [(i, 11) for i in range(12)]
    assert decoded_shape(latent.video) == (64, 64)


def test_prompts_encoded_on_the_cpu_serve_both_passes(cache: Path, upsampler_repo: Path) -> None:
    """The memory plan's last tier keeps the text encoder on the CPU: the prompt is encoded
    there once and the second pass reuses the embeddings."""
    from PIL import Image

    from pipeline.backends.diffusion import DiffusionBackend
    from pipeline.backends.text_on_cpu import detach_text_encoder

    add_upsampler(cache, upsampler_repo)
    backend = DiffusionBackend("ltx", options=BackendOptions(device="cpu"))
    encoder = detach_text_encoder(backend.pipe)
    backend._text_encoder = encoder
    calls: list[int] = []
    encoder.register_forward_hook(lambda module, args, output: calls.append(1))
    job = request(upscale=2)
    plan = backend.plan(job, (64, 64))
    frames = backend.render(Image.new("RGB", (64, 64), (90, 140, 200)), plan, job)
    assert frames.shape == (9, 64, 64, 3) and getattr(plan, "upscaled", 1) == 2
    assert len(calls) == 1


def decoded_shape(video: bytes) -> tuple[int, int]:
    import io

    with av.open(io.BytesIO(video)) as container:
        stream = container.streams.video[0]
        return stream.codec_context.width, stream.codec_context.height


def test_only_fresh_clips_of_the_presets_within_4k_upscale_in_latents(
    cache: Path, upsampler_repo: Path, tiny_ltx_dir: Path
) -> None:
    from pipeline.backends.diffusion import DiffusionBackend

    add_upsampler(cache, upsampler_repo)
    backend = DiffusionBackend("ltx", options=BackendOptions(device="cpu"))
    assert backend.plan(request(upscale=2), (64, 64)).upscaled == 2
    assert backend.plan(request(upscale=1), (64, 64)).upscaled == 1
    # An extension keeps the clip's size; past 4K the finish step refuses in its own words.
    assert backend.plan(request(upscale=2, previous_clip=b"mp4"), (64, 64)).upscaled == 1
    assert backend.plan(request(upscale=2, width=2048, height=1024), (64, 64)).upscaled == 1
    # A checkpoint that is not the preset (a local directory) keeps Real-ESRGAN.
    local = DiffusionBackend(str(tiny_ltx_dir), options=BackendOptions(device="cpu"))
    assert local.plan(request(upscale=2), (64, 64)).upscaled == 1


def test_workers_and_the_cli_count_the_latent_upsampler_as_upscaling(
    cache: Path, upsampler_repo: Path
) -> None:
    add_upsampler(cache, upsampler_repo)
    for model in ("ltx", "ltx-2b", "auto"):
        require_weights(FinishPlan(upscale=2), model=model)
        assert support(model=model)["upscale"] is None
    with pytest.raises(FinishUnavailable, match="python -m pipeline download upscale"):
        require_weights(FinishPlan(upscale=2), model="wan")
    assert support(model="wan")["upscale"] is not None
    assert support()["upscale"] is not None  # a worker that does not name its model
    assert FinishPlan.of(request(upscale=2), upscaled=2) == FinishPlan()
    assert FinishPlan.of(request(upscale=2, interpolate=2), upscaled=2) == FinishPlan(interpolate=2)


class _Workers:
    """The dispatcher as the job layer reads it: the workers' own answers."""

    def __init__(self, *infos: WorkerInfo) -> None:
        self.workers = list(infos)
        self.models = [m for info in infos for m in info.models]

    def known_models(self) -> set[str]:
        return {m for info in self.workers for m in info.models}


class _Kept:
    """The store's side of an Upscale 2× press: one delivered clip, its MP4 kept."""

    def __init__(self, job: Job) -> None:
        self.job = job

    async def get_job(self, job_id: int) -> Job:
        assert job_id == self.job.id
        return self.job


@pytest.mark.asyncio
async def test_a_worker_with_only_the_latent_upsampler_takes_animate_upscale_but_not_the_button(
    upsampler_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker answers per model: where only LTX's latent upsampler is downloaded (no
    Real-ESRGAN), `/animate upscale` on `ltx-2b` is taken (the render upscales itself), on
    `wan` refused with the download to run; the Upscale 2× button on a delivered clip works on
    its MP4, which only Real-ESRGAN can upscale: not offered, and a press refused."""
    from pipeline.backends.camera import CameraBackend
    from pipeline.worker import PipelineWorker

    cache = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    add_upsampler(cache, upsampler_repo)
    # The answer needs no model loaded: the worker's warm-up loads a stand-in.
    worker = PipelineWorker(
        "gpu-0", ["ltx-2b", "wan"], backend_factory=lambda model, options: CameraBackend(), fetch={}
    )
    info = await worker.info()
    config = JobsConfig(models=("ltx-2b", "wan"), pricing=Pricing(default_per_second=1.0, finish_per_second={"upscale": 1.0}))
    service = JobService(store=None, dispatcher=_Workers(info), config=config)  # type: ignore[arg-type]

    spec = service.spec(model="ltx-2b", duration=5.0, upscale=2)
    assert spec.finishes == ("upscale",) and service.cost_of(spec) == 5 + 5
    with pytest.raises(NotSupported, match=r"Upscaling isn't available here: .*download upscale"):
        service.spec(model="wan", duration=5.0, upscale=2)

    mp4 = tmp_path / "5.mp4"
    mp4.write_bytes(b"kept")
    clip = Job(
        id=5, user_id=1, status=JobStatus.DELIVERED, action=JobAction.ANIMATE,
        spec=JobSpec(model="ltx-2b", duration=5.0), cost=5, delivery={}, attempts=1,
        low_memory=False, created_at=0.0, result_path=str(mp4),
        clip=ClipSummary(width=768, height=512, frames=121, fps=24.0, seed=11, model="ltx-2b"),
    )
    assert "upscale" not in service.finishes_offered(clip)
    service.store = _Kept(clip)  # type: ignore[assignment]
    with pytest.raises(NotSupported, match=r"Upscaling isn't available here: .*download upscale"):
        await service.check_finish(clip.id, "upscale")


# --- downloading -------------------------------------------------------------------------------


def test_download_fetches_exactly_the_upsampler_files(
    hub: HubServer, upsampler_repo: Path, capsys
) -> None:
    files = {
        p.relative_to(upsampler_repo).as_posix(): p.read_bytes()
        for p in upsampler_repo.rglob("*") if p.is_file()
    }
    files["README.md"] = b"# upsampler\n"
    files["LICENSE"] = b"license text\n"
    hub.add_repo(UPSAMPLER_REPO, files)
    assert {"model_index.json", "vae/diffusion_pytorch_model.safetensors"} <= set(files)

    assert main(["download", "ltx-upscale", "--quiet"]) == 0, capsys.readouterr().err
    assert capsys.readouterr().out.splitlines() == ["ltx-upscale: downloaded"]
    assert sorted(hub.fetched()) == sorted((UPSAMPLER_REPO, name) for name in UPSAMPLER_FILES)
    from pipeline.finish.latent import (
        latent_upscale_available,
        load_latent_upsampler,
        upsampler_dir,
    )

    assert latent_upscale_available("ltx") and latent_upscale_available("ltx-2b")
    assert load_latent_upsampler(upsampler_dir(LATENT)).config.in_channels == 8
    hub.reset_log()
    assert main(["download", "ltx-upscale", "--quiet"]) == 0
    assert hub.fetched() == []
