"""One pipeline worker per GPU in the Ray cluster, brought back after a crash.

Workers are created through a spawner the composition root hands in (the bot passes
``pipeline.worker.create_worker``): the job layer never imports the pipeline. Where there is
no GPU, CPU_WORKERS workers take one CPU each, and they retire once GPUs appear. Ray restarts
a worker that dies; this module notices and brings it back into service when it answers.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable, Collection
from typing import Any, Literal, Protocol

import ray
from ray.exceptions import ActorDiedError, RayActorError
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, wait_exponential

from contract import BackendOptions, WorkerInfo, one_line

log = logging.getLogger("jobs.pool")

RETRY_CAP = 300.0
"""Longest pause between attempts to start workers that keep dying before they are ready."""

WorkerState = Literal["starting", "ready", "restarting", "retiring", "dead"]


class Spawner(Protocol):
    """Creates one worker actor and returns its handle (``pipeline.worker.create_worker``)."""

    def __call__(
        self,
        name: str,
        models: list[str],
        *,
        gpu: bool,
        options: BackendOptions | None = None,
        backend_factory: Any = None,
    ) -> Any: ...


class Worker:
    """The job layer's view of one actor: its handle, what it said about itself, its state.

    Which jobs run on it is the dispatcher's business (it passes the busy workers to
    :meth:`WorkerPool.reap`), so the pool never reads another module's records.
    """

    def __init__(self, name: str, handle: Any, *, gpu: bool) -> None:
        self.name = name
        self.handle = handle
        self.gpu = gpu
        self.info: WorkerInfo | None = None
        self.state: WorkerState = "starting"
        self.bring_up: asyncio.Task[None] | None = None

    @property
    def ready(self) -> bool:
        return self.state == "ready" and self.info is not None

    def __repr__(self) -> str:
        return f"<Worker {self.name} {self.state}>"


class WorkerPool:
    """Creates workers to match the cluster's GPUs, watches them come back after a crash."""

    def __init__(
        self,
        models: list[str],
        options: BackendOptions,
        *,
        cpu_workers: int,
        spawn: Spawner,
        backend_factory: Any = None,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.models = list(models)
        self.options = options
        self.cpu_workers = cpu_workers
        self.spawn = spawn
        self.backend_factory = backend_factory
        self.on_change = on_change
        self.workers: list[Worker] = []
        self._seq = itertools.count()
        self._failures = 0
        self._retry_at = 0.0

    def alive(self) -> list[Worker]:
        return [w for w in self.workers if w.state != "dead"]

    def ready(self) -> list[Worker]:
        return [w for w in self.workers if w.ready]

    async def scale(self) -> None:
        """One worker per GPU in the cluster; CPU workers only while there is no GPU."""
        if time.monotonic() < self._retry_at:
            return
        resources = await asyncio.to_thread(ray.cluster_resources)
        gpus = int(resources.get("GPU", 0))
        alive = self.alive()
        if gpus:
            have = sum(1 for w in alive if w.gpu)
            for _ in range(gpus - have):
                self._create(gpu=True)
            for worker in alive:
                if not worker.gpu and worker.state != "retiring":
                    log.info("GPUs joined: retiring CPU worker %s", worker.name)
                    worker.state = "retiring"
        elif not alive:
            for _ in range(self.cpu_workers):
                self._create(gpu=False)

    def reap(self, busy: Collection[Worker] = ()) -> None:
        """Stop retired workers once they have no job (`busy`: workers with jobs)."""
        for worker in list(self.workers):
            if worker.state == "retiring" and worker not in busy:
                self._kill(worker, restart=False)

    def _create(self, *, gpu: bool) -> Worker:
        name = f"{'gpu' if gpu else 'cpu'}-{next(self._seq)}"
        handle = self.spawn(
            name,
            self.models,
            gpu=gpu,
            options=self.options,
            backend_factory=self.backend_factory,
        )
        worker = Worker(name, handle, gpu=gpu)
        self.workers.append(worker)
        log.info("starting %s worker %s for %s", "GPU" if gpu else "CPU", name, ", ".join(self.models))
        worker.bring_up = asyncio.create_task(self._bring_up(worker))
        return worker

    async def _bring_up(self, worker: Worker) -> None:
        """Wait until the actor answers (model loaded, or restarted after a crash)."""
        deaths = 0

        def coming_back(exc: BaseException) -> bool:
            # Unavailable while Ray restarts it; "died" over and over means gone for good
            # (killed for good, or its creation fails: e.g. the package is missing there).
            nonlocal deaths
            if not isinstance(exc, RayActorError):
                return False
            deaths = deaths + 1 if isinstance(exc, ActorDiedError) else 0
            return deaths < 5 and "creation task" not in str(exc)

        def waiting(state: RetryCallState) -> bool:
            return worker.state not in ("starting", "restarting")

        async def ask() -> WorkerInfo:
            return await worker.handle.info.remote()

        retrying = AsyncRetrying(
            retry=retry_if_exception(coming_back),
            wait=wait_exponential(multiplier=0.2, max=2.0),
            stop=waiting,
            reraise=True,
        )
        try:
            info = await retrying(ask)
        except RayActorError as exc:
            if worker.state in ("starting", "restarting"):
                self._gone(worker, exc)
            return
        if worker.state not in ("starting", "restarting"):
            return
        first = worker.info is None
        worker.info = info
        worker.state = "ready"
        self._failures = 0
        for model, error in info.errors.items():
            log.error("worker %s cannot load %s: %s", worker.name, model, error)
        log.info(
            "worker %s %s: %s, serving %s (pid %d)",
            worker.name, "ready" if first else "back after a restart", info.label,
            ", ".join(info.models), info.pid,
        )
        self.on_change()

    def _gone(self, worker: Worker, exc: BaseException) -> None:
        """A worker that cannot come back; one that never started also delays new ones."""
        worker.state = "dead"
        if worker in self.workers:
            self.workers.remove(worker)
        if worker.info is None:
            self._failures += 1
            pause = min(RETRY_CAP, 5.0 * 2 ** (self._failures - 1))
            self._retry_at = time.monotonic() + pause
            log.error(
                "worker %s could not start (next try in %.0f s): %s", worker.name, pause, exc
            )
        else:
            log.error("worker %s is gone: %s", worker.name, one_line(exc, 200))
        self.on_change()

    def crashed(self, worker: Worker) -> None:
        """A job saw the actor die: Ray restarts it; use it again once it answers. (A
        retiring worker is not brought back: the next reap removes it.)"""
        if worker.state in ("ready", "starting"):
            worker.state = "restarting"
            log.warning("worker %s died; waiting for Ray to restart it", worker.name)
            worker.bring_up = asyncio.create_task(self._bring_up(worker))

    def restart(self, worker: Worker) -> None:
        """Kill a stuck actor so Ray starts a fresh one (its jobs see it die)."""
        log.warning("worker %s did not stop its job in time; restarting it", worker.name)
        try:
            ray.kill(worker.handle, no_restart=False)
        except Exception:  # noqa: BLE001 - already dead is fine
            log.debug("kill %s", worker.name, exc_info=True)

    def _kill(self, worker: Worker, *, restart: bool) -> None:
        if not restart:
            worker.state = "dead"
            if worker.bring_up is not None:
                worker.bring_up.cancel()
        try:
            ray.kill(worker.handle, no_restart=not restart)
        except Exception:  # noqa: BLE001
            log.debug("kill %s", worker.name, exc_info=True)
        if not restart:
            self.workers.remove(worker)

    def forget(self) -> None:
        """The Ray runtime died with every actor in it: drop them without calling Ray."""
        for worker in self.workers:
            worker.state = "dead"
            if worker.bring_up is not None:
                worker.bring_up.cancel()
        self.workers.clear()
        self._failures, self._retry_at = 0, 0.0
        self.on_change()

    async def close(self) -> None:
        for worker in list(self.workers):
            self._kill(worker, restart=False)
        self.workers.clear()
