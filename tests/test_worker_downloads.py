"""A worker downloads its presets' missing weights in the background (pipeline/fetcher.py).

The worker answers at once; a job for a model still downloading waits for it on the worker,
seeing ``Progress("download", ...)``, and renders once the files are there; a download that
fails is the model's error and each job for it fails once with the download's sentence. The
files come from the local stand-in hub (tests/hub_server.py) through huggingface_hub's own
download code; only *which* repo a preset means is replaced, by a tiny LTX pipeline, and the
stand-in holds one file's body half-sent until the test lets it go (a slow hub, made
deterministic)."""

# ruff: noqa: F811  (the hub fixture imported from test_downloads is "redefined" as an argument)
from __future__ import annotations

import asyncio
import functools
import io
import re
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tiny_models  # sets HF_HUB_OFFLINE=1 by default; the hub fixture unsets it
from hub_server import HubServer, _Handler
from test_downloads import hub  # noqa: F401  (the stand-in hub fixture, reused)

from contract import AnimateRequest, AnimateResult, Failed, Progress, WorkerInfo
from jobs.retry import GiveUp, decide
from pipeline import downloads, fetcher
from pipeline.downloads import Wanted
from pipeline.worker import PipelineWorker

TINY = "tiny/ltx"
WEIGHTS = "transformer/diffusion_pytorch_model.safetensors"
"""The file whose body the stand-in holds: the third of the three weight files fetched."""
SECRET = "hf_doNotLogThisToken0123456789"


# --- a slow hub: one file's body stops half-way until the test releases it ------------------


class _HeldWriter:
    """Writes the first `after` bytes of a body, then waits for `gate` before the rest."""

    def __init__(self, raw: Any, after: int, gate: threading.Event) -> None:
        self.raw, self.left, self.gate = raw, after, gate

    def write(self, data: bytes) -> int:
        if self.left > 0 and len(data) > self.left:
            self.raw.write(data[: self.left])
            self.raw.flush()
            data, self.left = data[self.left :], 0
            self.gate.wait(30)
        return self.raw.write(data)

    def flush(self) -> None:
        self.raw.flush()


@pytest.fixture
def hold(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """``gate = hold(hub, repo, file, after)``: the next GET of that file's body sends `after`
    bytes and then waits until ``gate.set()`` (or 30 s)."""
    gates: list[threading.Event] = []
    original = _Handler._body

    def body(self: Any, repo_id: str, file: str, data: bytes, **kwargs: Any) -> int:
        held = getattr(self.hub, "held", {}).pop((repo_id, file), None)
        if held is None or kwargs.get("head"):
            return original(self, repo_id, file, data, **kwargs)
        raw, self.wfile = self.wfile, _HeldWriter(self.wfile, *held)
        try:
            return original(self, repo_id, file, data, **kwargs)
        finally:
            self.wfile = raw

    monkeypatch.setattr(_Handler, "_body", body)

    def arm(server: HubServer, repo_id: str, file: str, after: int) -> threading.Event:
        gate = threading.Event()
        gates.append(gate)
        server.held = getattr(server, "held", {})  # type: ignore[attr-defined]
        server.held[(repo_id, file)] = (after, gate)  # type: ignore[attr-defined]
        return gate

    yield arm
    for gate in gates:
        gate.set()


@pytest.fixture
def tiny_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_models.tiny_model_dir("ltx", tmp_path_factory)


def tiny_ltx(model: str, options: Any) -> Any:
    """The backend factory: the preset's name, the tiny pipeline downloaded as TINY."""
    from pipeline.backends import load_backend

    return load_backend(TINY, options)


def png() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (96, 64), (90, 140, 200)).save(out, format="PNG")
    return out.getvalue()


def request(job_id: str) -> AnimateRequest:
    return AnimateRequest(
        image=png(), model="ltx-2b", prompt="a cat", seed=7, duration=0.5, steps=2, fps=8,
        width=64, height=64, job_id=job_id,
    )


async def run_job(worker: PipelineWorker, job_id: str, events: list[Any]) -> None:
    async for event in worker.run(job_id, request(job_id)):
        events.append(event)


async def until(predicate: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def as_tiny(monkeypatch: pytest.MonkeyPatch, repo: str = TINY) -> None:
    """Every preset's files are `repo`'s: the production path from the preset table and this
    machine's memory plan on, with only the files' repo replaced."""
    monkeypatch.setattr(
        fetcher, "wanted_for_machine", lambda preset, machine, weights="auto", offload="auto": ([Wanted(repo)], "test")
    )


# --- the worker on its own (no Ray) ---------------------------------------------------------


@pytest.mark.asyncio
async def test_the_worker_answers_at_once_and_a_job_waits_for_the_download(
    hub: HubServer, hold: Any, tiny_repo: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(downloads, "PROGRESS_INTERVAL", 0.0)
    monkeypatch.setenv("HF_TOKEN", SECRET)
    as_tiny(monkeypatch)
    hub.add_repo(TINY, tiny_repo)
    gate = hold(hub, TINY, WEIGHTS, after=1000)
    caplog.set_level("INFO", logger="pipeline.worker")

    started = time.monotonic()
    worker = PipelineWorker("cpu-0", ["ltx-2b"], backend_factory=tiny_ltx)
    assert time.monotonic() - started < 5.0  # not after the download
    await until(lambda: hub.gets_of(TINY, WEIGHTS))  # the held file is on its way
    info = await worker.info()
    assert isinstance(info, WorkerInfo) and info.loaded == () and info.errors == {}
    assert list(info.downloads) == ["ltx-2b"] and 0.0 < info.downloads["ltx-2b"] < 1.0

    events: list[Any] = []
    job = asyncio.ensure_future(run_job(worker, "1", events))
    await until(lambda: any(isinstance(e, Progress) and e.stage == "download" for e in events))
    await asyncio.sleep(0.3)
    assert not job.done() and all(e.stage == "download" for e in events)
    waiting = events[-1]
    assert re.fullmatch(r"Downloading the model: \d+ %", waiting.message)
    assert waiting.total == 1 and waiting.step == 0  # MiB: the tiny repo is under one

    gate.set()
    await asyncio.wait_for(job, 120)
    stages = [e.stage for e in events if isinstance(e, Progress)]
    downloading = [e for e in events if isinstance(e, Progress) and e.stage == "download"]
    assert stages[: len(downloading)] == ["download"] * len(downloading)  # first, then the job
    assert downloading[-1].message == "Downloading the model: 100 %"
    assert downloading[-1].step == downloading[-1].total == 1
    assert "denoise" in stages and isinstance(events[-1], AnimateResult)

    # The files came once each, through the hub's download path; nothing is left to fetch.
    fetched = hub.fetched()
    assert len(fetched) == len(set(fetched)) and (TINY, WEIGHTS) in fetched
    info = await worker.info()
    assert info.downloads == {} and info.errors == {} and "ltx-2b" in info.loaded
    again: list[Any] = []
    await run_job(worker, "2", again)
    assert isinstance(again[-1], AnimateResult)
    assert not [e for e in again if isinstance(e, Progress) and e.stage == "download"]

    # One log line to start, one per tenth or so, one when done; never the token.
    lines = [r.getMessage() for r in caplog.records if r.name == "pipeline.worker"]
    assert any(line.startswith("worker cpu-0: ltx-2b is not fully downloaded") for line in lines)
    assert any(re.fullmatch(r"worker cpu-0: downloading ltx-2b: \d+ % of \d+ KiB", line) for line in lines)
    assert any(re.match(r"worker cpu-0: downloaded ltx-2b: 100 % of \d+ KiB in", line) for line in lines)
    assert SECRET not in caplog.text


@pytest.mark.asyncio
async def test_a_worker_whose_models_are_downloaded_asks_the_hub_nothing(
    hub: HubServer, tiny_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    as_tiny(monkeypatch)
    hub.add_repo(TINY, tiny_repo)
    downloads.download([Wanted(TINY)])
    hub.reset_log()

    worker = PipelineWorker("cpu-0", ["ltx-2b", "camera"], backend_factory=tiny_ltx)

    assert "ltx-2b" in (await worker.info()).loaded  # warmed up before it answered, as before
    assert (await worker.info()).downloads == {}
    events: list[Any] = []
    await run_job(worker, "1", events)
    assert isinstance(events[-1], AnimateResult)
    assert hub.requests == []


@pytest.mark.asyncio
async def test_a_partly_downloaded_model_gets_only_its_missing_file(
    hub: HubServer, tiny_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    as_tiny(monkeypatch)
    hub.add_repo(TINY, tiny_repo)
    (snapshot,) = downloads.download([Wanted(TINY)])
    weights = snapshot / WEIGHTS
    weights.resolve().unlink()  # the blob, as if its download had been cut off
    weights.unlink()
    assert fetcher.is_fetched([Wanted(TINY)]) is False
    hub.reset_log()

    worker = PipelineWorker("cpu-0", ["ltx-2b"], backend_factory=tiny_ltx)
    events: list[Any] = []
    await asyncio.wait_for(run_job(worker, "1", events), 60)

    assert isinstance(events[-1], AnimateResult)
    assert hub.fetched() == [(TINY, WEIGHTS)]
    assert fetcher.is_fetched([Wanted(TINY)]) is True


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "case, sentence",
    [
        ("missing", "Cannot download 'tiny/missing': the repo was not found on the Hugging Face hub"),
        ("gated", "'tiny/gated' is gated: accept its licence on https://huggingface.co/tiny/gated"),
    ],
)
async def test_a_failed_download_fails_each_job_once_with_its_sentence(
    hub: HubServer, tiny_repo: Path, monkeypatch: pytest.MonkeyPatch, case: str, sentence: str
) -> None:
    repo = f"tiny/{case}"
    if case == "gated":
        hub.add_repo(repo, tiny_repo, token="hf_someone_elses")  # no HF_TOKEN here: 401
    as_tiny(monkeypatch, repo)
    loads: list[str] = []

    def factory(model: str, options: Any) -> Any:
        loads.append(model)
        raise AssertionError("nothing may load a model that did not download")

    worker = PipelineWorker("cpu-0", ["ltx-2b"], backend_factory=factory)
    events: list[Any] = []
    await asyncio.wait_for(run_job(worker, "1", events), 60)

    finals = [e for e in events if not isinstance(e, Progress)]
    assert len(finals) == 1 and isinstance(finals[0], Failed)
    failed = finals[0]
    assert failed.kind == "model" and not failed.retryable and failed.reason.startswith(sentence)
    assert all(e.stage == "download" for e in events[:-1])
    # The job layer refunds it once and does not try again.
    verdict = decide(failed, attempts=1, max_attempts=3, cost=4)
    assert isinstance(verdict, GiveUp) and verdict.reason == failed.reason + " Your credits were refunded."

    info = await worker.info()
    assert info.errors == {"ltx-2b": failed.reason} and info.downloads == {}
    # The next job fails the same way at once, without asking the hub again.
    asked = len(hub.requests)
    again: list[Any] = []
    await asyncio.wait_for(run_job(worker, "2", again), 10)
    assert len(again) == 1 and again[0] == failed
    assert len(hub.requests) == asked and loads == []


# --- through the bot: Ray workers, the loopback Discord -------------------------------------


EXTRA = "someone/effects"


def camera_needing_a_file(model: str, options: Any) -> Any:
    """A backend whose load in low-memory mode needs one more hub file than the background
    fetch planned, as the GGUF files of the lower tier the retry after an OOM picks."""
    from pipeline.backends.hub import fetch_file

    if options.low_memory:
        fetch_file(EXTRA, "effect.safetensors", "The GGUF file")
    return camera_for_any_model(model, options)


@pytest.mark.asyncio
async def test_a_file_the_load_downloads_shows_on_the_job_and_pauses_its_timeout(
    hub: HubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Before, such a file came down silently inside "Loading the model", with the job's
    # timeout running: a retry that needed GBs of GGUF files could time out, be refunded and
    # start the same download again.
    monkeypatch.setattr(downloads, "PROGRESS_INTERVAL", 0.0)
    hub.add_repo(EXTRA, {"effect.safetensors": bytes(range(256)) * 2048})  # 512 KiB
    worker = PipelineWorker("cpu-0", ["ltx-2b"], backend_factory=camera_needing_a_file, fetch={})
    assert (await worker.info()).downloads == {}  # nothing planned in the background

    events: list[Any] = []

    async def retry() -> None:  # the job again after an OOM: the worker loads a lower tier
        async for event in worker.run("1", request("1"), low_memory=True):
            events.append(event)

    await asyncio.wait_for(retry(), 60)
    stages = [e.stage for e in events if isinstance(e, Progress)]
    assert "download" in stages, stages
    first, last = stages.index("download"), len(stages) - 1 - stages[::-1].index("download")
    assert stages[first - 1] == "load"  # the load started, then its download shows
    assert stages[last + 1] == "load"  # and the load again once it is done: the pause ends
    shown = [e for e in events if isinstance(e, Progress) and e.stage == "download"]
    assert all(re.fullmatch(r"Downloading the model: \d+ %", e.message) for e in shown)
    assert shown[-1].message == "Downloading the model: 100 %"
    assert isinstance(events[-1], AnimateResult)
    assert hub.fetched().count((EXTRA, "effect.safetensors")) == 1


@pytest.mark.asyncio
async def test_a_cancel_stops_a_download_the_load_makes(
    hub: HubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A member who cancels while the retry's GGUF files come down: the download stops at its
    # next progress report (huggingface_hub's 10 MiB chunks) and the job ends cancelled,
    # leaving no half file in the cache for the next load to trust.
    from huggingface_hub import constants

    monkeypatch.setattr(downloads, "PROGRESS_INTERVAL", 0.0)
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 64 * 1024)
    hub.add_repo(EXTRA, {"effect.safetensors": bytes(range(256)) * 16384})  # 4 MiB
    worker = PipelineWorker("cpu-0", ["ltx-2b"], backend_factory=camera_needing_a_file, fetch={})
    events: list[Any] = []

    async def retry() -> None:
        async for event in worker.run("1", request("1"), low_memory=True):
            events.append(event)
            if isinstance(event, Progress) and event.stage == "download":
                await worker.cancel("1")

    await asyncio.wait_for(retry(), 60)
    assert isinstance(events[-1], Failed) and events[-1].kind == "cancelled", events[-1]
    from pipeline.backends.hub import cached_file

    assert cached_file(EXTRA, "effect.safetensors") is None


def camera_for_any_model(model: str, options: Any) -> Any:
    """The backend factory of the bot test: the camera move stands in for the render."""
    from pipeline.backends.camera import CameraBackend

    return CameraBackend()


@pytest.mark.asyncio
async def test_the_bot_answers_while_a_worker_downloads_and_queue_shows_it(
    hub: HubServer, hold: Any, tiny_repo: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import ray
    import world
    from loopback import Upload
    from world import bot_world, private_ray, private_text

    from pipeline.worker import create_worker

    hub.add_repo(TINY, tiny_repo)
    gate = hold(hub, TINY, WEIGHTS, after=1000)
    monkeypatch.setenv("HF_HUB_DOWNLOAD_TIMEOUT", "60")  # the held body must not time out
    # The Ray workers are other processes: the preset's files are named through the
    # worker's `fetch` argument (monkeypatching would not reach them), the rest is as in
    # production; they inherit HF_ENDPOINT and HF_HUB_CACHE from this process.
    spawn = functools.partial(create_worker, fetch={"ltx-2b": [Wanted(TINY)]})
    monkeypatch.setattr(world, "create_worker", spawn)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

    timeout = 6.0  # JOB_TIMEOUT_SECONDS, shorter than the download: waiting does not count

    with private_ray():
        async with bot_world(
            tmp_path, model="ltx-2b", backend_factory=camera_for_any_model,
            job_timeout_seconds=timeout,
        ) as w:
            d = w.discord
            alice, owner = d.member, d.add_member(d.app_owner)
            run = await d.slash(
                "animate", {"image": Upload(png(), "photo.png"), "duration": 2.0}, user=alice
            )
            asked = time.monotonic()
            await run.message(lambda m: not m.ephemeral and m.card, timeout=30)

            def status() -> str:
                cards = [m for m in run.messages if not m.ephemeral and m.card]
                return next((t for t in cards[0].texts() if "Downloading" in t), "") if cards else ""

            await until(lambda: "Downloading the model: " in status(), timeout=60)
            assert re.search(r"Downloading the model: \d+ %", status())

            # The bot answers meanwhile.
            balance = await d.slash("balance", user=alice)
            assert "credits" in await private_text(balance)
            queue = await d.slash("queue", user=owner)
            answer = await queue.original(timeout=15)
            fields = {f["name"]: f["value"] for f in answer.embeds[0]["fields"]}
            assert re.fullmatch(r"Downloading ltx-2b for cpu-0: \d+ %", fields["Downloads (1)"])
            assert "cpu-0: ltx-2b on" in fields["Workers (1)"]

            await asyncio.sleep(timeout + 1.0 - (time.monotonic() - asked))
            assert "Downloading the model: " in status()  # still waiting, not timed out
            gate.set()
            await run.message(world.has_video, timeout=60)
            (job,) = await world.all_jobs(w.store, alice.id)
            debits = [e for e in await w.store.history(alice.id, limit=20) if e.kind == "debit"]
            assert [e.job_id for e in debits] == [job.id]  # charged once
            assert await w.store.balance(alice.id) == 20 - w.settings.cost("ltx-2b", 2.0)
            queue = await d.slash("queue", user=owner)
            answer = await queue.original(timeout=15)
            assert "Downloads" not in {f["name"] for f in answer.embeds[0]["fields"]}


def test_the_card_reads_the_download_in_words_and_the_job_bar_waits() -> None:
    from bot.progress_bar import bar, describe, fraction

    event = Progress("download", step=2771, total=6451, message="Downloading the model: 42 %")
    assert fraction(event) == 0.0  # nothing of the video is done yet
    assert describe(event, None).splitlines() == [bar(0.0), "Downloading the model: 42 %"]
