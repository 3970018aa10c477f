"""The whole bot on one machine for end-to-end tests.

A loopback Discord, a real SQLite store, a real dispatcher on a private local Ray instance
with the camera backend (loaded by the production `load_backend`), and the real `AnimateBot`
with all its cogs, talking to the loopback with the unmodified discord.py client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
from loopback import LoopbackDiscord

from bot.app import AnimateBot
from bot.settings import Settings
from contract import Cancelled, ModelError, Progress
from jobs import ALL, Dispatcher, JobService, Store
from pipeline.backends.camera import CameraBackend
from pipeline.worker import create_worker


@contextlib.contextmanager
def private_ray(num_cpus: int = 4) -> Iterator[None]:
    """A local Ray of our own (never another one on this machine), shut down afterwards."""
    ray.init(
        address="local",
        num_cpus=num_cpus,
        include_dashboard=False,
        logging_level=logging.ERROR,
        log_to_driver=False,
        object_store_memory=100 * 2**20,
    )
    try:
        yield
    finally:
        ray.shutdown()


class GatedCamera(CameraBackend):
    """The real camera backend, except that each job waits at a gate before it renders.

    A test holds jobs "rendering" for as long as it needs (restart mid-render, token expiry,
    a busy worker so that later jobs stay queued) and opens the gate with a file: `open`
    lets every job through, `open-<job id>` one job, `fail-<job id>` fails one. The worker writes `started-<job id>`
    when a job reaches the gate. Cancellation is honoured while waiting. Runs inside the
    Ray workers (the dispatcher's `backend_factory` seam), so the gate is the file system.
    """

    def __init__(self, gate_dir: str) -> None:
        super().__init__()
        self.gate_dir = gate_dir

    def render(self, image, plan, request, *, end_image=None, emit=lambda p: None, should_stop=lambda: False):  # type: ignore[no-untyped-def]
        self._wait(plan, request, emit, should_stop)
        return super().render(
            image, plan, request, end_image=end_image, emit=emit, should_stop=should_stop
        )

    def render_yuv420(self, image, plan, request, sink, *, emit=lambda p: None, should_stop=lambda: False):  # type: ignore[no-untyped-def]
        """The camera's streamed path (what animate() takes for a plain clip), gated too."""
        self._wait(plan, request, emit, should_stop)
        return super().render_yuv420(image, plan, request, sink, emit=emit, should_stop=should_stop)

    def _wait(self, plan, request, emit, should_stop) -> None:  # type: ignore[no-untyped-def]
        job = request.job_id or "?"
        open(os.path.join(self.gate_dir, f"started-{job}"), "w").close()
        emit(Progress("denoise", 0, plan.num_frames, message="Rendering the camera move"))
        while not (
            os.path.exists(os.path.join(self.gate_dir, "open"))
            or os.path.exists(os.path.join(self.gate_dir, f"open-{job}"))
        ):
            if should_stop():
                raise Cancelled()
            if os.path.exists(os.path.join(self.gate_dir, f"fail-{job}")):
                raise ModelError("The model gave up on this photo.")
            time.sleep(0.02)


def gated_camera(model: str, options: Any, *, gate_dir: str) -> GatedCamera:
    assert model == "camera", model
    return GatedCamera(gate_dir)


class Gate:
    """The test's side of :class:`GatedCamera`: see who waits, let them through."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.dir = directory

    @property
    def factory(self) -> Any:
        """For `bot_world(backend_factory=...)`. This module is not importable inside the
        Ray workers (tests/ is not on their path), so it travels pickled by value."""
        import functools
        import sys

        ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
        return functools.partial(gated_camera, gate_dir=str(self.dir))

    def started(self, job_id: int) -> bool:
        return (self.dir / f"started-{job_id}").exists()

    async def wait_started(self, job_id: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.started(job_id):
            assert time.monotonic() < deadline, f"job {job_id} never reached the gate"
            await asyncio.sleep(0.05)

    def open(self, job_id: int | None = None) -> None:
        (self.dir / ("open" if job_id is None else f"open-{job_id}")).touch()

    def fail(self, job_id: int) -> None:
        """The job waiting at the gate fails as a model that cannot go on does (kind "model")."""
        (self.dir / f"fail-{job_id}").touch()

    def close(self) -> None:
        (self.dir / "open").unlink(missing_ok=True)


class TestBot(AnimateBot):
    """The production bot minus discord.py's politeness delays (5 s re-identify, 2 s ready)."""

    __test__ = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, guild_ready_timeout=0.05, **kwargs)

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        return None


@dataclass
class World:
    discord: LoopbackDiscord
    bot: TestBot
    store: Store
    dispatcher: Dispatcher
    settings: Settings


def make_settings(discord_: LoopbackDiscord, tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = dict(
        discord_token=discord_.token,
        database_path=tmp_path / "bot.sqlite3",
        output_dir=tmp_path / "outputs",
        model="camera",
        guild_ids=str(discord_.guild.id),
        cpu_workers=1,
        welcome_credits=20,
        max_queued_per_user=5,
        discord_api_base=discord_.api_base,
        discord_gateway_url=discord_.gateway_url,
    )
    values.update(overrides)
    return Settings.load(env_file=None, **values)


@contextlib.asynccontextmanager
async def bot_world(
    tmp_path: Path,
    *,
    discord_: LoopbackDiscord | None = None,
    workers: int = 1,
    backend_factory: Any = None,
    **overrides: Any,
) -> AsyncIterator[World]:
    """Start everything; `discord_` lets a test keep one loopback across bot restarts.

    `backend_factory`: what the workers load instead of `load_backend` (e.g. `Gate.factory`).
    """
    async with contextlib.AsyncExitStack() as stack:
        if discord_ is None:
            discord_ = await stack.enter_async_context(LoopbackDiscord())
        settings = make_settings(discord_, tmp_path, **overrides)
        store = await Store.open(settings.database_path, settings.credit_policy())
        stack.push_async_callback(store.close)
        config = settings.jobs_config()
        dispatcher = Dispatcher(
            config, store, spawn=create_worker, tick=0.2, backend_factory=backend_factory
        )
        jobs = JobService(store, dispatcher, config)
        recovery = await jobs.start()
        stack.push_async_callback(jobs.stop)
        deadline = time.monotonic() + 60
        while len(dispatcher.workers) < workers:
            assert time.monotonic() < deadline, "workers did not come up"
            await asyncio.sleep(0.05)
        bot = TestBot(settings, store, jobs, recovery=recovery)
        await stack.enter_async_context(discord_.running(bot))
        yield World(discord_, bot, store, dispatcher, settings)


# ---- what tests look at ---------------------------------------------------------------------



async def private_text(run: Any) -> str:
    """The text of the private (ephemeral) answer to an interaction."""
    answer = await run.original(timeout=15)
    assert answer.ephemeral, answer.content
    return answer.text()


def has_video(message: Any) -> bool:
    return any(a.filename.endswith(".mp4") for a in message.attachments)


def video_of(message: Any) -> bytes:
    name = next(a.filename for a in message.attachments if a.filename.endswith(".mp4"))
    return message.file(name)


def small_png(side: int = 160, *, color: tuple[int, int, int] = (90, 140, 200)) -> bytes:
    """A small real photo-like PNG (a gradient), so camera clips stay cheap."""
    import io

    import numpy as np
    from PIL import Image

    y, x = np.mgrid[0:side, 0:side]
    rgb = np.stack([(x * 255 // side), (y * 255 // side), np.full_like(x, color[2])], -1)
    out = io.BytesIO()
    Image.fromarray(rgb.astype("uint8")).save(out, format="PNG")
    return out.getvalue()


def noisy_png(side: int, seed: int = 0) -> bytes:
    """A PNG that does not compress: about 3 × side² bytes."""
    import io

    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


async def all_jobs(store: Store, user_id: int | None = None) -> list[Any]:
    return await store.jobs(user_id=user_id, statuses=ALL)


async def ledger_kinds(store: Store, user_id: int) -> list[tuple[str, int, int | None]]:
    """(kind, delta, job id) of a member's ledger rows, oldest first."""
    return [(e.kind, e.delta, e.job_id) for e in reversed(await store.history(user_id, limit=100))]


async def wait_status(store: Store, job_id: int, *statuses: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        job = await store.get_job(job_id)
        if job.status in statuses:
            return job
        assert time.monotonic() < deadline, f"job {job_id} is {job.status}, not {statuses}"
        await asyncio.sleep(0.05)


def n_credits(n: int) -> str:
    """How members should read an amount: '1 credit', '3 credits'."""
    return f"{n} credit" if n == 1 else f"{n} credits"
