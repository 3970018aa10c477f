"""The Ray actor that renders: one per GPU (or per CPU worker), its model loaded once and warm.

The bot creates these actors and never runs a model itself. Importing this module is cheap
(Ray and the plain contract types, no torch): the bot imports it to create actors, and torch
is imported only inside the actor process, by the backend.

One actor serves up to :data:`SLOTS` jobs at once, and only the model stage is exclusive: a
job's intake (decode, orient, fit the photo) and encode run on the actor's thread pool beside
the render of another job, and ``render`` holds the model lock of :mod:`pipeline.resident`. The
dispatcher hands a worker its second job when the first one reaches its last denoise step
(the worker marks that event ``leaving_model``), so the next photo is read while the last
step and the decode run, and the finished clip is encoded while the next one renders: the accelerator
does not wait on CPU work that can overlap.

Each job is one call of :meth:`PipelineWorker.run`, an async generator that Ray streams to
the caller (``async for ref in handle.run.remote(...)``): any number of :class:`Progress`,
then exactly one :class:`AnimateResult` or :class:`Failed`. It never raises for a job's own
failure; an exception on the caller's side means the actor process died.

Backends come from a factory ``(model, options) -> Backend``; the default is
:func:`pipeline.backends.load_backend`. The factory is the seam for test doubles: it is
pickled to the actor, so any importable (or by-value pickled) callable works.

Weights a preset lacks on this machine are downloaded in the background
(:mod:`pipeline.fetcher`): the actor answers at once, a job for a model still downloading
waits for it with ``Progress("download", ...)`` events, and :meth:`PipelineWorker.info`
reports how far each download is. The first model is warmed up after its download, in the
background too; a model with nothing to download is warmed up before the actor answers, as
before, so a worker that says it is ready has it loaded.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import socket
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import ray

from contract import (
    SLOTS,
    AnimateRequest,
    AnimateResult,
    BackendOptions,
    Event,
    Failed,
    ModelError,
    PipelineError,
    Progress,
    Takes,
    WorkerInfo,
    is_out_of_memory,
)
from pipeline.resident import ResidentModels

if TYPE_CHECKING:
    from pipeline.backends.base import Backend
    from pipeline.downloads import Wanted

log = logging.getLogger("pipeline.worker")

BackendFactory = Callable[[str, BackendOptions], "Backend"]

OOM_REASON = "The renderer ran out of memory."
INTERNAL_REASON = "Something went wrong while rendering this video."


def _leaving_model(progress: Progress) -> bool:
    """True once a job is in its last denoise step, or past the denoise loop (decode, encode).

    The job layer gives the worker its next job at this point (it reads the event's
    ``leaving_model`` flag): that photo's intake then happens while this job finishes on the
    model, so the next render starts the moment the model lock is free.
    """
    if progress.takes > 1 and progress.take < progress.takes:
        return False  # more takes of this job follow on the model
    if progress.stage in ("decode", "encode"):
        return True
    return progress.stage == "denoise" and progress.total > 0 and progress.step >= progress.total - 1


class PipelineWorker:
    """A warm backend plus the job plumbing around :func:`pipeline.animate.animate`.

    Plain class so it can be tested without Ray; :func:`create_worker` makes it an actor.
    """

    def __init__(
        self,
        name: str,
        models: list[str] | tuple[str, ...],
        options: BackendOptions | None = None,
        backend_factory: BackendFactory | None = None,
        fetch: Mapping[str, Sequence[Wanted]] | None = None,
    ) -> None:
        """`fetch`: what to download per model instead of the presets' files (see
        :class:`pipeline.fetcher.Fetcher`); None in production."""
        from pipeline.fetcher import Fetcher

        if not models:
            raise ValueError("a worker needs at least one model")
        self.name = name
        gpu_ids = _gpu_ids()
        options = options or BackendOptions()
        if not gpu_ids and options.device is None:
            options = options.replace(device="cpu")
        self.options = options
        self._factory = backend_factory
        self._pool = ThreadPoolExecutor(max_workers=SLOTS + 1, thread_name_prefix="job")
        self._models = ResidentModels(name, options, self._load)
        self._stops: dict[str, threading.Event] = {}
        self._early_cancels: deque[str] = deque(maxlen=64)
        self.aliases = {model: self._resolve(model) for model in models}
        self.models = tuple(dict.fromkeys(self.aliases.values()))
        self.errors: dict[str, str] = {}
        self._device, self._device_name = _device(gpu_ids)
        self._finishing, self._finishing_by_model = _finishing(self.models)
        self._cards = _cards(self.models)
        # Missing weights download in the background, so the actor answers at once.
        self._fetcher = Fetcher(name, self.models, options, fetch=fetch)
        self._fetcher.start()
        # Warm up: load the default model now, so the first job does not pay for it and a
        # model that cannot load is reported at start, not on a member's job; after its
        # download, on a thread, when it has one to wait for.
        if self._fetcher.pending(self.models[0]):
            threading.Thread(target=self._warm_up, name=f"warm-up-{name}", daemon=True).start()
        else:
            self._warm_up()

    # ---- remote API --------------------------------------------------------------------------

    async def info(self) -> WorkerInfo:
        loaded = self._models.loaded()
        node_id = ""
        node = _node_ip()
        if ray.is_initialized():
            node_id = ray.get_runtime_context().get_node_id()
        return WorkerInfo(
            name=self.name,
            models=self.models,
            aliases=dict(self.aliases),
            label=f"{self._device_name} on {node}",
            device=self._device,
            device_name=self._device_name,
            node=node,
            node_id=node_id,
            pid=os.getpid(),
            loaded=loaded,
            errors={**self._fetcher.failures(), **self.errors},
            downloads=self._fetcher.downloads(),
            finishing=dict(self._finishing),
            finishing_by_model={m: dict(a) for m, a in self._finishing_by_model.items()},
            cards=dict(self._cards),
        )

    async def cancel(self, job_id: str) -> bool:
        """Ask a job to stop; it ends soon after with Failed(kind="cancelled").

        True when the job was running here; a cancel that arrives before its job is
        remembered, so the job stops as soon as it starts.
        """
        stop = self._stops.get(job_id)
        if stop is None:
            self._early_cancels.append(job_id)
            return False
        stop.set()
        return True

    async def fit_upload(self, video: bytes, max_bytes: int) -> bytes:
        """Re-encode a finished clip under `max_bytes` (Discord refused the upload as too
        large, e.g. the guild lost a boost): decoding and encoding video is worker work,
        never the bot process's."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, _fit_upload, video, max_bytes)

    async def run(
        self, job_id: str, request: AnimateRequest, low_memory: bool = False
    ) -> AsyncIterator[Event]:
        """Render one job, streaming Progress events and then its AnimateResult or Failed
        (a job with variations: Takes, or Failed when every take failed)."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        stop = threading.Event()
        if job_id in self._early_cancels:
            stop.set()
        self._stops[job_id] = stop
        done = object()

        def emit(progress: Progress) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, progress)

        future = loop.run_in_executor(
            self._pool, self._work, request, low_memory, emit, stop.is_set
        )
        future.add_done_callback(lambda _: queue.put_nowait(done))
        preview_sent = False
        try:
            while True:
                item = await queue.get()
                if item is done:
                    break
                if item.preview is not None:
                    # Members see one small preview (the first decoded frame), not a stream.
                    if preview_sent:
                        item = dataclasses.replace(item, preview=None)
                    preview_sent = True
                if _leaving_model(item):
                    item = dataclasses.replace(item, leaving_model=True)
                yield item
            yield future.result()
        finally:
            # The caller went away (generator closed): stop the work rather than finish it.
            stop.set()
            self._stops.pop(job_id, None)

    # ---- the job, on a pool thread ---------------------------------------------------------

    def _work(
        self,
        request: AnimateRequest,
        low_memory: bool,
        emit: Callable[[Progress], None],
        should_stop: Callable[[], bool],
    ) -> AnimateResult | Takes | Failed:
        from pipeline.animate import animate
        from pipeline.takes import animate_takes

        model = self.aliases.get(request.model, request.model)
        if model not in self.models:
            return ModelError(f"This renderer does not have the model {request.model!r}.").to_event()
        key = (model, low_memory)
        acquired = False
        oom = False
        try:
            if request.finish_clip is not None:
                # Smooth or Upscale 2× on a delivered clip: no render, so no model either.
                return _refinish(request, model, emit, should_stop)
            waited: list[Progress] = []

            def relay(progress: Progress) -> None:
                waited.append(progress)
                emit(progress)

            self._fetcher.wait(model, relay, should_stop)
            if waited:
                # The job layer pauses the job's timeout while it sees downloads; this ends
                # the pause even if the load that follows waits silently for another one.
                emit(Progress("load", message="Loading the model"))
            backend = self._models.acquire(key, emit, should_stop)
            acquired = True
            self.errors.pop(model, None)
            stage = self._models.stage(backend, should_stop)
            if request.variations > 1:
                # The takes run back to back here, on the model this job holds.
                return animate_takes(request, stage, emit=emit, should_stop=should_stop)
            return animate(request, stage, emit=emit, should_stop=should_stop)
        except PipelineError as exc:
            oom = exc.kind == "oom"
            return exc.to_event()
        except BaseException as exc:  # noqa: BLE001 - a job's failure must not kill the actor
            if is_out_of_memory(exc):
                oom = True
                return Failed(OOM_REASON, kind="oom", retryable=True)
            log.exception("worker %s: job %s failed", self.name, request.job_id)
            return Failed(INTERNAL_REASON, kind="internal")
        finally:
            if acquired:
                self._models.release(key, drop=oom)

    def _warm_up(self) -> None:
        model = self.models[0]
        key = (model, False)
        try:
            self._fetcher.wait(model, None)
        except PipelineError:  # the fetcher logged it; info() and each job report it
            return
        try:
            self._models.acquire(key, None)
            self._models.release(key)
        except Exception as exc:  # noqa: BLE001 - reported through info() and each job
            self.errors[model] = _message(exc)
            log.error("worker %s: cannot load %s: %s", self.name, model, _message(exc))

    def _load(self, model: str, options: BackendOptions) -> Backend:
        if self._factory is not None:
            return self._factory(model, options)
        from pipeline.backends import load_backend

        return load_backend(model, options)

    def _resolve(self, model: str) -> str:
        """What a configured name means on this machine ("auto" → "ltx" or "camera")."""
        if model != "auto" or self._factory is not None:
            return model
        from pipeline.backends import resolve_auto

        return resolve_auto(self.options)


def create_worker(
    name: str,
    models: list[str],
    *,
    gpu: bool,
    options: BackendOptions | None = None,
    backend_factory: BackendFactory | None = None,
    fetch: Mapping[str, Sequence[Wanted]] | None = None,
) -> Any:
    """Start one worker actor; returns its handle (the model loads in the background).

    Resources are declared, never placed by hand: ``num_gpus=1`` (Ray picks the GPU and sets
    CUDA_VISIBLE_DEVICES) or one CPU. Ray restarts a dead actor (kill -9, segfault) with the
    same arguments; a task in flight is not retried (``max_task_retries=0``): the bot decides.
    `fetch` replaces the presets' files to download (tests); see :class:`PipelineWorker`.
    """
    return _RemoteWorker.options(
        num_gpus=1 if gpu else 0,
        num_cpus=1,
        max_restarts=-1,
        max_task_retries=0,
    ).remote(name, list(models), options, backend_factory, fetch)


_RemoteWorker = ray.remote(PipelineWorker)


# ---- helpers ------------------------------------------------------------------------------


def _gpu_ids() -> list[Any]:
    if not ray.is_initialized():
        return []
    try:
        return list(ray.get_gpu_ids())
    except Exception:  # noqa: BLE001 - outside a worker (e.g. plain tests)
        return []


def _device(gpu_ids: list[Any]) -> tuple[str, str]:
    """("cuda", "NVIDIA H100 ...") or ("cpu", "AMD EPYC ..."); torch only when a GPU is ours."""
    if gpu_ids:
        try:
            import torch

            return "cuda", torch.cuda.get_device_name(0)
        except Exception:  # noqa: BLE001 - a name is nice to have
            return "cuda", f"GPU {gpu_ids[0]}"
    name = "CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return "cpu", name


def _node_ip() -> str:
    try:
        return ray.util.get_node_ip_address()
    except Exception:  # noqa: BLE001
        return socket.gethostname()


def _refinish(
    request: AnimateRequest,
    model: str,
    emit: Callable[[Progress], None],
    should_stop: Callable[[], bool],
) -> AnimateResult:
    """A delivered clip (`request.finish_clip`) finished as the request's `interpolate`,
    `fps_out` and `upscale` say, under its byte limit (pipeline.finish.clip)."""
    from pipeline.finish import FinishPlan
    from pipeline.finish.clip import refinish

    assert request.finish_clip is not None
    return refinish(
        request.finish_clip, FinishPlan.of(request), seed=request.seed or 0, model=model,
        max_bytes=request.max_bytes, emit=emit, should_stop=should_stop,
    )


def _fit_upload(video: bytes, max_bytes: int) -> bytes:
    from pipeline.encode import decode_frames, encode_mp4

    frames, fps = decode_frames(video)
    return encode_mp4(frames, fps, max_bytes=max_bytes).data


def _message(exc: BaseException) -> str:
    return exc.message if isinstance(exc, PipelineError) else f"{type(exc).__name__}: {exc}"


__all__ = [
    "SLOTS",
    "BackendFactory",
    "PipelineWorker",
    "WorkerInfo",
    "create_worker",
]


def _cards(models: Sequence[str]) -> dict[str, str]:
    """For each served model that is not a preset, the preset whose card it follows (its
    family's defaults, from its model_index.json; a hub repo only when its index is cached, so
    no request is made): the bot offers and charges the lengths it really makes."""
    from contract import CARDS
    from pipeline.backends.hub import cached_file
    from pipeline.backends.source import resolve

    cards = {}
    for model in models:
        if model in CARDS:
            continue
        local = os.path.isdir(os.path.expanduser(model))
        if not local and cached_file(model, "model_index.json") is None:
            continue
        try:
            cards[model] = resolve(model).preset.name
        except Exception as exc:  # noqa: BLE001 - the load says what is wrong with it
            log.debug("no card for %s: %s", model, exc)
    return cards


def _finishing(
    models: Sequence[str],
) -> tuple[dict[str, str | None], dict[str, dict[str, str | None]]]:
    """Whether this machine can Smooth and Upscale a typical clip (pipeline.finish.support:
    instant where the weights are missing, a second of timing on a CPU where they are), and
    per served model what differs for a render on it (an LTX preset upscales inside its
    render where its latent upsampler is here: pipeline.finish.render_support)."""
    from pipeline.finish import render_support, support

    try:
        answers = support()
        return answers, render_support(models, answers)
    except Exception as exc:  # noqa: BLE001 - a broken finish must not stop the worker
        log.warning("cannot tell whether this machine can smooth or upscale: %s", exc)
        reason = "Smoothing and upscaling are not available on the renderer right now."
        return {"smooth": reason, "upscale": reason}, {}
