"""The models a worker keeps loaded: each loaded once and kept warm, switched only when no
job uses the resident one, and the lock that makes the model stage exclusive.

At most one model (besides the camera move, which holds none) is resident. Loading holds the
model lock, so it never competes with a render for the accelerator; after running out of
memory every unused model is dropped, so the retry (in low-memory mode) starts from an empty
device.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from contract import AnimateRequest, BackendOptions, Cancelled, Progress
from pipeline.backends.hub import downloads_shown_to
from pipeline.backends.placement import free_device_memory
from pipeline.fetcher import download_progress

if TYPE_CHECKING:
    from pipeline.backends.base import Backend

log = logging.getLogger("pipeline.worker")

CAMERA = "camera"
"""The one backend that holds no model: it never needs another one unloaded."""
Key = tuple[str, bool]
"""(model, low_memory)."""


class ResidentModels:
    def __init__(
        self,
        name: str,
        options: BackendOptions,
        load: Callable[[str, BackendOptions], Backend],
    ) -> None:
        self.name = name
        self.options = options
        self._load = load
        self.model_lock = threading.Lock()
        """Held by a render (and a load): the model stage is one job at a time."""
        self._state = threading.Condition()
        self._backends: dict[Key, Backend] = {}
        self._users: Counter[Key] = Counter()
        self._loading = False

    def loaded(self) -> tuple[str, ...]:
        with self._state:
            return tuple(name for name, _ in self._backends)

    def stage(self, backend: Backend, should_stop: Callable[[], bool]) -> ModelStage:
        return ModelStage(backend, self.model_lock, should_stop)

    def acquire(
        self,
        key: Key,
        emit: Callable[[Progress], None] | None,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> Backend:
        """The loaded backend for (model, low_memory), loading it if needed; loading another
        model waits until no job uses the resident one, then unloads it."""
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
            with self.model_lock:
                for k, victim in victims:
                    log.info("worker %s: unloading %s", self.name, k[0])
                    _close(victim)
                if emit is not None:
                    emit(Progress("load", message=f"Loading the {model} model"))
                options = self.options.replace(low_memory=True) if low_memory else self.options
                shown: list[Any] = []

                def report(done: Any) -> None:
                    if should_stop():  # raised through the download, which stops
                        raise Cancelled()
                    shown.append(done)
                    fraction = done.done_bytes / done.total_bytes if done.total_bytes else 0.0
                    emit(download_progress(fraction, done.done_bytes, done.total_bytes))  # type: ignore[misc]

                with downloads_shown_to(report if emit is not None else None):
                    loaded = self._load(model, options)
                if shown and emit is not None:  # ends the job's pause for the download
                    emit(Progress("load", message=f"Loading the {model} model"))
            return loaded
        finally:
            with self._state:
                self._loading = False
                if loaded is not None:
                    self._backends[key] = loaded
                    self._users[key] += 1
                self._state.notify_all()

    def release(self, key: Key, *, drop: bool = False) -> None:
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
            free_device_memory()


class ModelStage:
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
        if getattr(backend, "render_yuv420", None) is not None:
            # The camera move draws straight into the encoder (pipeline.stream): offered
            # under the same lock, so animate() takes the fast path inside the worker too.
            self.render_yuv420 = self._render_yuv420

    def plan(self, request: AnimateRequest, image_size: tuple[int, int]) -> Any:
        return self._backend.plan(request, image_size)

    def render(self, image: Any, plan: Any, request: AnimateRequest, **kwargs: Any) -> Any:
        return self._locked(self._backend.render, image, plan, request, **kwargs)

    def _render_yuv420(self, *args: Any, **kwargs: Any) -> Any:
        return self._locked(self._backend.render_yuv420, *args, **kwargs)

    def _locked(self, draw: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        while not self._lock.acquire(timeout=0.1):
            if self._should_stop():
                raise Cancelled()
        try:
            return draw(*args, **kwargs)
        finally:
            self._lock.release()

    def close(self) -> None:
        """The worker owns the backend's lifetime."""


def _close(backend: Any) -> None:
    try:
        backend.close()
    except Exception:  # noqa: BLE001 - freeing must not fail a job
        log.exception("closing a backend failed")
