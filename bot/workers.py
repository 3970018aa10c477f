"""Ray on the bot side: start or join Ray, and keep one pipeline worker per GPU.

No RAY_ADDRESS: the bot starts a private local Ray instance (nothing for the operator to
install or run). RAY_ADDRESS set: the bot joins that cluster as a driver and runs one worker
per GPU in it, adding workers as GPU machines join (a cheap periodic look at the cluster's
resources). Where there is no GPU, CPU_WORKERS workers take one CPU each, and they retire
once GPUs appear. Ray restarts a worker that dies; this module notices and brings it back
into service when it answers again.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import socket
import sys
import time
from collections.abc import Callable
from typing import Any, Literal

import ray
from ray.exceptions import ActorDiedError, RayActorError

from contract import BackendOptions
from contract import SLOTS, WorkerInfo
from pipeline.worker import BackendFactory, create_worker

log = logging.getLogger("bot.workers")

CONNECT_TIMEOUT = 30.0
"""Longest wait for Ray at RAY_ADDRESS before start-up gives up (the TCP probe is faster)."""
RETRY_CAP = 300.0
"""Longest pause between attempts to start workers that keep dying before they are ready."""
PROBE_TIMEOUT = 3.0

WorkerState = Literal["starting", "ready", "restarting", "retiring", "dead"]


class RayUnavailable(Exception):
    """Ray cannot be started or reached; the message is one line for the operator."""


async def connect_ray(address: str | None, *, cpu_workers: int = 1) -> bool:
    """Start a local Ray instance (address empty) or join the cluster at `address`.

    Returns True when this call started Ray (the caller shuts it down), False when Ray was
    already initialised in this process (tests, an embedding application) and is reused.
    Raises RayUnavailable with one line, within about CONNECT_TIMEOUT seconds.
    """
    address = (address or "").strip() or None
    if address is not None:
        _check_address(address)
    if ray.is_initialized():
        return False
    if address is None:
        _quiet_ray()
        try:
            ray.init(
                address="local",
                num_cpus=max(os.cpu_count() or 1, cpu_workers),
                include_dashboard=False,
                logging_level=logging.WARNING,
                log_to_driver=True,
            )
        except Exception as exc:  # noqa: BLE001 - any failure here stops start-up
            raise RayUnavailable(f"Cannot start a local Ray instance: {_one_line(exc)}") from None
        return True
    # ray.init against something that is not a healthy Ray cluster retries for minutes, and
    # it must run on the main thread (a driver initialised elsewhere loses its actors), so
    # a throwaway process tries first, within a bounded time.
    await _probe_cluster(address, CONNECT_TIMEOUT)
    try:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=True)
    except Exception as exc:  # noqa: BLE001
        raise RayUnavailable(_unreachable(address, _one_line(exc))) from None
    return True


_PROBE = """
import logging, sys
import ray
try:
    ray.init(address=sys.argv[1], logging_level=logging.ERROR, log_to_driver=False)
    print("OK")
except BaseException as exc:
    root = exc
    while root.__cause__ is not None:
        root = root.__cause__
    text = str(exc)
    if root is not exc:
        text += " (" + str(root).strip().splitlines()[-1].split(". ")[0] + ")"
    if "auth" in text.lower():
        text += "; if the cluster uses token auth, set RAY_AUTH_MODE=token and put its token in ~/.ray/auth_token"
    print("ERR " + " ".join(text.split()))
"""


async def _probe_cluster(address: str, timeout: float) -> None:
    """Connect once from a child process; raise RayUnavailable unless that works in time."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _PROBE, address,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        out, _ = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise RayUnavailable(_unreachable(address, f"no answer within {timeout:.0f} s")) from None
    lines = [line for line in out.decode(errors="replace").splitlines() if line.strip()]
    verdict = lines[-1] if lines else f"the probe exited with status {process.returncode}"
    if verdict != "OK":
        why = verdict.removeprefix("ERR ").strip()
        raise RayUnavailable(_unreachable(address, why if len(why) <= 300 else why[:297] + "..."))


def _check_address(address: str) -> None:
    """Refuse what cannot work, fast: Ray Client addresses and ports nobody listens on."""
    if "://" in address:
        raise RayUnavailable(
            f"RAY_ADDRESS={address} is a Ray Client address, which cannot stream progress: run "
            "the bot on a machine of the cluster (e.g. the head) with RAY_ADDRESS=auto or "
            "RAY_ADDRESS=<head>:6379."
        )
    if address == "auto":
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise RayUnavailable(
            f"RAY_ADDRESS={address} is not host:port (e.g. 10.0.0.5:6379) or auto."
        )
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=PROBE_TIMEOUT):
            pass
    except OSError as exc:
        raise RayUnavailable(_unreachable(address, exc.strerror or _one_line(exc))) from None


def _unreachable(address: str, why: str) -> str:
    if "auth" in why.lower():  # the cluster is there; the token is the problem
        return f"Cannot join the Ray cluster at RAY_ADDRESS={address}: {why}."
    return (
        f"Cannot reach the Ray cluster at RAY_ADDRESS={address} ({why}); start it with "
        "`ray start --head` (see README) or leave RAY_ADDRESS empty to run Ray inside the bot."
    )


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _quiet_ray() -> None:
    """A local instance always uses token auth; Ray's notice about it is noise for a bot."""
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(
        logging.ERROR
    )


class Worker:
    """The bot's view of one actor: its handle, what it said about itself, its jobs."""

    def __init__(self, name: str, handle: Any, *, gpu: bool) -> None:
        self.name = name
        self.handle = handle
        self.gpu = gpu
        self.info: WorkerInfo | None = None
        self.state: WorkerState = "starting"
        self.jobs: dict[int, Any] = {}
        """Job id → the dispatcher's record of that job on this worker."""
        self.bring_up: asyncio.Task[None] | None = None

    @property
    def ready(self) -> bool:
        return self.state == "ready" and self.info is not None

    def serves(self, model: str) -> bool:
        return self.info is not None and self.info.serves(model)

    def claim_models(self) -> set[str]:
        """Every name a job for this worker may carry: served models and their aliases."""
        if self.info is None:
            return set()
        return set(self.info.models) | set(self.info.aliases)

    def same_model(self, model: str) -> set[str]:
        """Names that mean the same loaded model as `model` here (for the overlap slot)."""
        if self.info is None:
            return set()
        resolved = self.info.aliases.get(model, model)
        return {resolved} | {k for k, v in self.info.aliases.items() if v == resolved}

    @property
    def full(self) -> bool:
        return len(self.jobs) >= SLOTS

    def __repr__(self) -> str:
        return f"<Worker {self.name} {self.state} jobs={sorted(self.jobs)}>"


class WorkerPool:
    """Creates workers to match the cluster's GPUs, watches them come back after a crash."""

    def __init__(
        self,
        models: list[str],
        options: BackendOptions,
        *,
        cpu_workers: int,
        backend_factory: BackendFactory | None = None,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.models = list(models)
        self.options = options
        self.cpu_workers = cpu_workers
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
        self.reap()
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

    def reap(self) -> None:
        """Stop retired workers once their jobs are done."""
        for worker in list(self.workers):
            if worker.state == "retiring" and not worker.jobs:
                self._kill(worker, restart=False)

    def _create(self, *, gpu: bool) -> Worker:
        name = f"{'gpu' if gpu else 'cpu'}-{next(self._seq)}"
        handle = create_worker(
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
        delay = 0.2
        deaths = 0
        while worker.state in ("starting", "restarting"):
            try:
                info: WorkerInfo = await worker.handle.info.remote()
            except RayActorError as exc:
                # Unavailable while Ray restarts it; "died" over and over means gone for good
                # (killed for good, or its creation fails: e.g. the package is missing there).
                deaths = deaths + 1 if isinstance(exc, ActorDiedError) else 0
                if deaths >= 5 or "creation task" in str(exc):
                    self._gone(worker, exc)
                    return
                await asyncio.sleep(delay)
                delay = min(2.0, delay * 2)
                continue
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
            log.error("worker %s is gone: %s", worker.name, _one_line(exc))
        self.on_change()

    def crashed(self, worker: Worker) -> None:
        """A job saw the actor die: Ray restarts it; use it again once it answers."""
        if worker.state in ("ready", "starting"):
            worker.state = "restarting"
            log.warning("worker %s died; waiting for Ray to restart it", worker.name)
            worker.bring_up = asyncio.create_task(self._bring_up(worker))
        elif worker.state == "retiring" and not worker.jobs:
            self._kill(worker, restart=False)

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

    async def close(self) -> None:
        for worker in list(self.workers):
            self._kill(worker, restart=False)
        self.workers.clear()
