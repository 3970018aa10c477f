"""Shared by the dispatcher tests: a test backend that runs inside the Ray workers, an event
recorder, and small helpers. Workers cannot import this module (tests/ is not on their path),
so :func:`sleep_factory` registers it to travel pickled by value."""

from __future__ import annotations

import asyncio
import functools
import io
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import ray
from PIL import Image

from bot.settings import Settings
from contract import (
    AnimateRequest,
    BackendOptions,
    Cancelled,
    Event,
    JobSpec,
    PipelineError,
    Progress,
)
from jobs import Dispatcher, Job, JobsConfig, JobService, Origin, Recovery, Store
from pipeline.backends.base import BackendInfo, RenderPlan
from pipeline.worker import create_worker

WELCOME = 50
COST = 3


# ---- the test backend (runs inside the Ray workers) ------------------------------------------


class FakeOOM(PipelineError):
    kind = "oom"


class SleepBackend:
    """Renders 6 flat frames after `steps` steps of `step` seconds each.

    The member's prompt carries test directives: "step=0.2 steps=5" timing, "stubborn"
    (ignores should_stop), "crash" (kill -9 of its own process), "oom" (runs out of memory
    unless loaded in low-memory mode), "size=640x352 frames=49" a bigger clip (a panning
    photo, so encoding costs what a real clip of that size costs), "decode=2" two seconds of
    VAE decode after the last step (still in the model stage, the next job already prefetched).
    """

    def __init__(self, model: str, options: BackendOptions, log_dir: str) -> None:
        self.info = BackendInfo(
            name=model, label="Sleep (test)", family="test", is_ai=True, supports_prompt=True
        )
        self.options = options
        self.log_dir = Path(log_dir)

    @staticmethod
    def directives(request: AnimateRequest) -> dict[str, str]:
        out: dict[str, str] = {}
        for word in request.prompt.split():
            key, _, value = word.partition("=")
            out[key] = value
        return out

    def plan(self, request: AnimateRequest, image_size: tuple[int, int]) -> RenderPlan:
        d = self.directives(request)
        width, _, height = d.get("size", "64x48").partition("x")
        return RenderPlan(
            width=int(width),
            height=int(height),
            num_frames=int(d.get("frames", 6)),
            fps=6,
            steps=int(d.get("steps", 4)),
            guidance=0.0,
            seed=request.seed or 0,
        )

    def _log(self, request: AnimateRequest, what: str) -> None:
        line = f"{what} {time.time():.4f} {os.getpid()} {int(self.options.low_memory)}\n"
        with open(self.log_dir / f"{request.job_id}.log", "a", encoding="utf-8") as handle:
            handle.write(line)

    def render(
        self,
        image: Image.Image,
        plan: RenderPlan,
        request: AnimateRequest,
        *,
        end_image: Image.Image | None = None,
        emit: Callable[[Progress], None] = lambda p: None,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> np.ndarray:
        d = self.directives(request)
        step = float(d.get("step", 0.05))
        self._log(request, "start")
        if "oom" in d and not self.options.low_memory:
            raise FakeOOM("out of memory (test)")
        for i in range(plan.steps):
            if "crash" in d:
                os.kill(os.getpid(), signal.SIGKILL)
            deadline = time.monotonic() + step
            while time.monotonic() < deadline:
                if should_stop() and "stubborn" not in d:
                    self._log(request, "cancelled")
                    raise Cancelled()
                time.sleep(0.01)
            emit(Progress("denoise", i + 1, plan.steps))
        if "decode" in d:
            emit(Progress("decode", 0, 1, message="Decoding frames"))
            deadline = time.monotonic() + float(d["decode"])
            while time.monotonic() < deadline and not should_stop():
                time.sleep(0.01)
        frame = np.asarray(image.convert("RGB").resize((plan.width, plan.height)))
        frames = np.stack([np.roll(frame, 4 * i, axis=1) for i in range(plan.num_frames)])
        self._log(request, "end")
        return frames

    def close(self) -> None:
        pass


def make_sleep_backend(model: str, options: BackendOptions, *, log_dir: str) -> SleepBackend:
    return SleepBackend(model, options, log_dir)


def sleep_factory(log_dir: Path) -> Any:
    """The dispatcher's `backend_factory` for SleepBackend, logging to `log_dir`."""
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    return functools.partial(make_sleep_backend, log_dir=str(log_dir))


def photo() -> bytes:
    image = Image.new("RGB", (160, 120))
    image.paste((200, 80, 40), (0, 0, 80, 120))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


PHOTO = photo()


def settings_for(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_path": tmp_path / "bot.sqlite3",
        "output_dir": tmp_path / "out",
        "model": "sleep",
        "cpu_workers": 1,
        "max_queued_per_user": 10,
        "max_attempts": 2,
        "job_timeout_seconds": 60,
        "ray_address": "",
        "model_costs": '{"sleep": 3}',
    }
    values.update(overrides)
    return Settings.load(env_file=None, **values)


class Recorder:
    """Every (time, job, event) the dispatcher announced."""

    def __init__(self) -> None:
        self.events: list[tuple[float, Job, Event]] = []
        self.recovery: Recovery | None = None
        """What the dispatcher's start() recovered (set by whoever starts it)."""
        self._changed = asyncio.Event()

    async def __call__(self, job: Job, event: Event) -> None:
        self.events.append((time.time(), job, event))
        self._changed.set()

    def of(self, job_id: int) -> list[Event]:
        return [e for _, j, e in self.events if j.id == job_id]

    def final(self, job_id: int) -> list[Event]:
        return [e for e in self.of(job_id) if not isinstance(e, Progress)]

    def first_time(self, job_id: int, test: Callable[[Event], bool]) -> float | None:
        return next((t for t, j, e in self.events if j.id == job_id and test(e)), None)

    async def wait(self, predicate: Callable[[], bool], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out; events: {[(j.id, e) for _, j, e in self.events]}")
            self._changed.clear()
            waiter = asyncio.ensure_future(self._changed.wait())
            await asyncio.wait({waiter}, timeout=min(left, 0.2))
            waiter.cancel()

    async def finished(self, *job_ids: int, timeout: float = 30.0) -> None:
        await self.wait(lambda: all(self.final(j) for j in job_ids), timeout)

    def rendering(self, job_id: int) -> bool:
        return any(isinstance(e, Progress) and e.stage == "denoise" for e in self.of(job_id))


def render_log(log_dir: Path, job_id: int) -> list[tuple[str, float, int, bool]]:
    path = log_dir / f"{job_id}.log"
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        what, t, pid, low = line.split()
        rows.append((what, float(t), int(pid), low == "1"))
    return rows


def interval(log_dir: Path, job_id: int) -> tuple[float, float]:
    rows = render_log(log_dir, job_id)
    return (
        next(t for w, t, _, _ in rows if w == "start"),
        next(t for w, t, _, _ in rows if w == "end"),
    )


async def eventually(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


def make_dispatcher(config: JobsConfig, store: Store, log_dir: Path | None, **kw: Any) -> Dispatcher:
    """A dispatcher whose workers are the production actors, running SleepBackend (or, with
    no log_dir, the production loader)."""
    factory = None if log_dir is None else sleep_factory(log_dir)
    return Dispatcher(config, store, spawn=create_worker, backend_factory=factory, **kw)


async def submit(d: Dispatcher, user: int, prompt: str = "", **kw: Any) -> Job:
    """Queue a job through the job service, as the bot does (COST credits: 1 s at 3/s)."""
    spec = JobSpec(model="sleep", prompt=prompt, duration=1.0)
    return await JobService(d.store, d, d.config).submit(spec, Origin(user_id=user), image=PHOTO, **kw)


async def ledger(store: Store, user: int) -> list[tuple[str, int | None]]:
    return sorted((e.kind, e.job_id) for e in await store.history(user, limit=100))
