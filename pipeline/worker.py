"""The Ray actor that renders: one per GPU (or per CPU worker), its model loaded once and warm.

The bot creates these actors and never runs a model itself. Importing this module is cheap
(Ray and the plain contract types, no torch): the bot imports it to create actors, and torch
is imported only inside the actor process, by the backend.

One actor serves up to :data:`SLOTS` jobs at once, and only the model stage is exclusive: a
job's intake (decode, orient, fit the photo) and encode run on the actor's thread pool beside
the render of another job, and ``render`` holds :attr:`PipelineWorker._model_lock`. The
dispatcher hands a worker its second job when the first one reaches its last denoise step
(the worker marks that event ``leaving_model``), so the next photo is read while the last step and the
decode run, and the finished clip is encoded while the next one renders: the accelerator
does not wait on CPU work that can overlap.

Each job is one call of :meth:`PipelineWorker.run`, an async generator that Ray streams to
the caller (``async for ref in handle.run.remote(...)``): any number of :class:`Progress`,
then exactly one :class:`AnimateResult` or :class:`Failed`. It never raises for a job's own
failure; an exception on the caller's side means the actor process died.

Backends come from a factory ``(model, options) -> Backend``; the default is
:func:`pipeline.backends.load_backend`. The factory is the seam for test doubles: it is
pickled to the actor, so any importable (or by-value pickled) callable works.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import socket
import threading
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import ray

from contract import (
    SLOTS,
    AnimateRequest,
    AnimateResult,
    BackendOptions,
    Cancelled,
    Event,
    Failed,
    ModelError,
    PipelineError,
    Progress,
    WorkerInfo,
    is_out_of_memory,
)

if TYPE_CHECKING:
    from pipeline.backends.base import Backend

log = logging.getLogger("pipeline.worker")

BackendFactory = Callable[[str, BackendOptions], "Backend"]

OOM_REASON = "The renderer ran out of memory."
INTERNAL_REASON = "Something went wrong while rendering this video."
CAMERA = "camera"
"""The one backend that holds no model: it never needs another one unloaded."""


def _leaving_model(progress: Progress) -> bool:
    """True once a job is in its last denoise step, or past the denoise loop (decode, encode).

    The job layer gives the worker its next job at this point (it reads the event's
    ``leaving_model`` flag): that photo's intake then happens while this job finishes on the
    model, so the next render starts the moment the model lock is free.
    """
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
    ) -> None:
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
        self._model_lock = threading.Lock()
        self._state = threading.Condition()
        self._backends: dict[tuple[str, bool], Backend] = {}
        self._users: Counter[tuple[str, bool]] = Counter()
        self._loading = False
        self._stops: dict[str, threading.Event] = {}
        self._early_cancels: deque[str] = deque(maxlen=64)
        self.aliases = {model: self._resolve(model) for model in models}
        self.models = tuple(dict.fromkeys(self.aliases.values()))
        self.errors: dict[str, str] = {}
        self._device, self._device_name = _device(gpu_ids)
        # Warm up: load the default model now, so the first job does not pay for it and a
        # model that cannot load is reported at start, not on a member's job.
        key = (self.models[0], False)
        try:
            self._acquire(key, None)
            self._release(key)
        except Exception as exc:  # noqa: BLE001 - reported through info() and each job
            self.errors[self.models[0]] = _message(exc)
            log.error("worker %s: cannot load %s: %s", name, self.models[0], _message(exc))

    # ---- remote API --------------------------------------------------------------------------

    async def info(self) -> WorkerInfo:
        with self._state:
            loaded = tuple(name for name, _ in self._backends)
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
            errors=dict(self.errors),
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

    async def run(
        self, job_id: str, request: AnimateRequest, low_memory: bool = False
    ) -> AsyncIterator[Event]:
        """Render one job, streaming Progress events and then its AnimateResult or Failed."""
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
    ) -> AnimateResult | Failed:
        from pipeline.animate import animate

        model = self.aliases.get(request.model, request.model)
        if model not in self.models:
            return ModelError(f"This renderer does not have the model {request.model!r}.").to_event()
        key = (model, low_memory)
        acquired = False
        oom = False
        try:
            backend = self._acquire(key, emit, should_stop)
            acquired = True
            stage = _ModelStage(backend, self._model_lock, should_stop)
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
                self._release(key, drop=oom)

    # ---- backends: loaded once, switched only when no job uses them -------------------------

    def _acquire(
        self,
        key: tuple[str, bool],
        emit: Callable[[Progress], None] | None,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> Backend:
        """The loaded backend for (model, low_memory), loading it if needed.

        At most one model (besides the camera move) is resident: loading another waits until
        no job uses the resident one, then unloads it. Loading holds the model lock, so it
        never competes with a render for the accelerator.
        """
        model, low_memory = key
        with self._state:
            while True:
                if should_stop():
                    raise Cancelled()
                if self._loading:
                    self._state.wait(0.2)
                    continue
                backend = self._backends.get(key)
                if backend is not None:
                    self._users[key] += 1
                    return backend
                evict = [k for k in self._backends if k[0] != CAMERA] if model != CAMERA else []
                if any(self._users[k] for k in evict):
                    self._state.wait(0.2)
                    continue
                self._loading = True
                victims = [(k, self._backends.pop(k)) for k in evict]
                break
        loaded: Backend | None = None
        try:
            with self._model_lock:
                for k, victim in victims:
                    log.info("worker %s: unloading %s", self.name, k[0])
                    _close(victim)
                if emit is not None:
                    emit(Progress("load", message=f"Loading the {model} model"))
                options = self.options.replace(low_memory=True) if low_memory else self.options
                loaded = self._load(model, options)
            return loaded
        finally:
            with self._state:
                self._loading = False
                if loaded is not None:
                    self._backends[key] = loaded
                    self._users[key] += 1
                    self.errors.pop(model, None)
                self._state.notify_all()

    def _release(self, key: tuple[str, bool], *, drop: bool = False) -> None:
        """A job is done with its backend; after running out of memory, free every model
        nobody uses so the retry (in low-memory mode) starts from an empty device."""
        with self._state:
            self._users[key] -= 1
            victims = []
            if drop:
                victims = [
                    (k, self._backends.pop(k))
                    for k in list(self._backends)
                    if k[0] != CAMERA and not self._users[k]
                ]
            self._state.notify_all()
        for _, victim in victims:
            _close(victim)
        if drop:
            _empty_cuda_cache()

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


class _ModelStage:
    """The backend as animate() sees it: only render() takes the worker's model lock, so
    intake, planning and encoding of other jobs run beside it. Waiting for the lock stays
    cancellable."""

    def __init__(
        self, backend: Backend, lock: threading.Lock, should_stop: Callable[[], bool]
    ) -> None:
        self._backend = backend
        self._lock = lock
        self._should_stop = should_stop
        self.info = backend.info

    def plan(self, request: AnimateRequest, image_size: tuple[int, int]) -> Any:
        return self._backend.plan(request, image_size)

    def render(self, image: Any, plan: Any, request: AnimateRequest, **kwargs: Any) -> Any:
        while not self._lock.acquire(timeout=0.1):
            if self._should_stop():
                raise Cancelled()
        try:
            return self._backend.render(image, plan, request, **kwargs)
        finally:
            self._lock.release()

    def close(self) -> None:
        """The worker owns the backend's lifetime."""


def create_worker(
    name: str,
    models: list[str],
    *,
    gpu: bool,
    options: BackendOptions | None = None,
    backend_factory: BackendFactory | None = None,
) -> Any:
    """Start one worker actor; returns its handle (the model loads in the background).

    Resources are declared, never placed by hand: ``num_gpus=1`` (Ray picks the GPU and sets
    CUDA_VISIBLE_DEVICES) or one CPU. Ray restarts a dead actor (kill -9, segfault) with the
    same arguments; a task in flight is not retried (``max_task_retries=0``): the bot decides.
    """
    return _RemoteWorker.options(
        num_gpus=1 if gpu else 0,
        num_cpus=1,
        max_restarts=-1,
        max_task_retries=0,
    ).remote(name, list(models), options, backend_factory)


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


def _message(exc: BaseException) -> str:
    return exc.message if isinstance(exc, PipelineError) else f"{type(exc).__name__}: {exc}"


def _close(backend: Any) -> None:
    try:
        backend.close()
    except Exception:  # noqa: BLE001 - freeing must not fail a job
        log.exception("closing a backend failed")


def _empty_cuda_cache() -> None:
    import gc
    import sys

    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


__all__ = [
    "SLOTS",
    "BackendFactory",
    "PipelineWorker",
    "WorkerInfo",
    "create_worker",
]
