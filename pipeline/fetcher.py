"""A worker's missing model weights, fetched once in the background while the worker answers.

Why in the background: a preset's weights are gigabytes; a worker that downloaded them before
answering would keep the bot from knowing it exists (and /queue from showing anything) for
as long as the download takes. So a worker starts at once, :class:`Fetcher` downloads what
its presets lack, one model after another in the configured order, and a job for a model
that is still downloading waits for it (:meth:`Fetcher.wait`), its card showing how far the
download is. Cancelling the job stops its wait, never the download other jobs share.

What is "missing" is decided from the local hub cache alone (:func:`is_fetched`), so a
worker whose models are all there makes no request at all. Only presets are fetched here:
the camera move holds no weights, a local directory is the operator's, and a hub id that is
not a preset keeps the loader's own download on first use. Which files a preset needs on
this machine (its own weights, or GGUF ones) is the memory plan's choice
(:func:`pipeline.fetch.wanted_for_machine`), the same plan the loader follows.

A download that fails is that model's error: every job for it fails with the download's
one sentence (:class:`~contract.ModelError`, so the job layer refunds it and does not retry),
until a job arrives :data:`RETRY_AFTER` seconds later, which tries the download again.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from contract import (
    BackendOptions,
    Cancelled,
    ModelError,
    PipelineError,
    Progress,
    one_line,
)
from pipeline.backends.hub import (
    cached_file,
    hub_cache_dir,
    hub_reachable,
    is_cached,
    is_offline,
)
from pipeline.backends.model_index import CONFIG_FILES, component_names
from pipeline.downloads import DownloadProgress, Wanted, download, size_text
from pipeline.fetch import wanted_for_machine
from pipeline.memory.machine import Machine, host_ram, this_machine
from pipeline.presets import PRESETS

log = logging.getLogger("pipeline.worker")

MIB = 2**20
RETRY_AFTER = 300.0
"""Seconds after a failed download before a job for that model tries it again (sooner, every
job would wait out the same failure; never, a network hiccup would need a restart)."""
POLL = 0.2
"""Seconds between a waiting job's looks at its cancel flag."""

State = Literal["waiting", "downloading", "done", "failed"]


@dataclass
class _Download:
    """One model's download, shared by every job that waits for it."""

    model: str
    wanted: list[Wanted]
    why: str
    state: State = "waiting"
    done_bytes: int = 0
    total_bytes: int = 0
    """0 until the hub listed the files still missing."""
    error: str | None = None
    failed_at: float = 0.0
    started_at: float = 0.0
    logged_tenth: int = -1
    """The last tenth of the download written to the log."""

    @property
    def fraction(self) -> float:
        if self.state == "done":
            return 1.0
        return 0.0 if self.total_bytes <= 0 else min(1.0, self.done_bytes / self.total_bytes)


def wanted_for_model(model: str, options: BackendOptions) -> tuple[list[Wanted], str] | None:
    """What `model` loads from the hub on this machine, and why those weights; None when
    nothing is fetched here (not a preset: the camera, a local directory, another hub id)."""
    preset = PRESETS.get(model)
    if preset is None:
        return None
    if (options.device or "").startswith("cpu"):
        machine = Machine(0, host_ram(available=True))
    else:
        machine = this_machine(free=True)
    return wanted_for_machine(preset, machine, weights=options.weights, offload=options.offload)


def is_fetched(wanted: Sequence[Wanted]) -> bool:
    """Whether everything `wanted` names is complete in the local hub cache; no network.

    A diffusers repo counts when its model_index.json, every component's config and, for
    each component with a ``config.json`` (a model, not a scheduler or tokenizer) whose
    weights are not skipped, its weights are there: every shard its ``*.index.json`` lists,
    or a weight file. A file that was cut off is never in a snapshot (huggingface_hub links
    a file there only once it is complete). When in doubt this says no, and
    :func:`~pipeline.downloads.download` then asks the hub and fetches only what is missing.
    """
    for item in wanted:
        if item.files is not None:
            if not all(cached_file(item.repo_id, name) for name in item.files):
                return False
        elif not _repo_fetched(item):
            return False
    return True


def _repo_fetched(item: Wanted) -> bool:
    snapshot = _snapshot(item.repo_id)
    if snapshot is None:
        return False
    index_path = snapshot / "model_index.json"
    if not index_path.is_file():  # a LoRA repo: its one .safetensors file
        return any(p.suffix == ".safetensors" and p.is_file() for p in snapshot.iterdir())
    try:
        model_index = json.loads(index_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    if not isinstance(model_index, dict):
        return False
    for name in component_names(model_index):
        folder = snapshot / name
        if not any((folder / config).is_file() for config in CONFIG_FILES):
            return False
        if name in item.skip_weights_of or not (folder / "config.json").is_file():
            continue
        if not _weights_fetched(folder):
            return False
    return True


def _weights_fetched(folder: Path) -> bool:
    indexes = [p for p in folder.glob("*.json") if ".index." in p.name]
    for index in indexes:
        try:
            shards = set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError):
            continue
        if shards and all((folder / shard).is_file() for shard in shards):
            return True
    if indexes:
        return False
    return any(p.suffix in (".safetensors", ".bin") and p.is_file() for p in folder.iterdir())


def _snapshot(repo_id: str) -> Path | None:
    """The snapshot folder ``refs/main`` names in the hub cache, or None."""
    from huggingface_hub.file_download import repo_folder_name

    try:
        repo = Path(hub_cache_dir()) / repo_folder_name(repo_id=repo_id, repo_type="model")
        revision = (repo / "refs" / "main").read_text().strip()
    except (OSError, ValueError):
        return None
    snapshot = repo / "snapshots" / revision
    return snapshot if revision and snapshot.is_dir() else None


def _usable_offline(wanted: Sequence[Wanted]) -> bool:
    """What the loader accepts without the hub: configs of each repo, each exact file."""
    return all(
        is_cached(w.repo_id) if w.files is None else all(cached_file(w.repo_id, f) for f in w.files)
        for w in wanted
    )


def percent(fraction: float) -> int:
    """Whole percent, rounded down: 100 only when every byte is there."""
    return min(100, max(0, math.floor(fraction * 100)))


def download_progress(fraction: float, done_bytes: int, total_bytes: int) -> Progress:
    """The event a waiting job sees: step and total in MiB, the percentage in words."""
    total = max(1, math.ceil(total_bytes / MIB)) if total_bytes > 0 else 0
    step = total if fraction >= 1.0 else min(total, done_bytes // MIB)
    return Progress(
        "download", step=step, total=total,
        message=f"Downloading the model: {percent(fraction)} %",
    )


class Fetcher:
    """The downloads of one worker's models; thread-safe.

    Args:
        worker: the worker's name, for log lines.
        models: the models the worker serves, in configured order (the download order).
        options: the worker's backend options (device, weights) for the memory plan.
        fetch: instead of the presets' files, exactly these per model (models not in it
            need nothing); for tests and for operators who list their own.
    """

    def __init__(
        self,
        worker: str,
        models: Sequence[str],
        options: BackendOptions,
        *,
        fetch: Mapping[str, Sequence[Wanted]] | None = None,
    ) -> None:
        self.worker = worker
        self._lock = threading.Condition()
        self._models: dict[str, _Download] = {}
        self._thread: threading.Thread | None = None
        for model in dict.fromkeys(models):
            try:
                if fetch is not None:
                    plan = (list(fetch[model]), "as configured") if model in fetch else None
                else:
                    plan = wanted_for_model(model, options)
            except Exception as exc:  # noqa: BLE001 - the loader will say what is wrong
                log.warning(
                    "worker %s: cannot tell which files %s needs (%s); the loader fetches them",
                    worker, model, one_line(exc),
                )
                continue
            if plan is None or not plan[0] or is_fetched(plan[0]):
                continue
            self._models[model] = _Download(model, plan[0], plan[1])

    # ---- what the worker asks ---------------------------------------------------------------

    def pending(self, model: str) -> bool:
        """Whether `model` is still to be downloaded (or downloading) here."""
        with self._lock:
            entry = self._models.get(model)
            return entry is not None and entry.state in ("waiting", "downloading")

    def downloads(self) -> dict[str, float]:
        """Model -> fraction done, for models still to be downloaded (for WorkerInfo)."""
        with self._lock:
            return {
                m.model: m.fraction for m in self._models.values()
                if m.state in ("waiting", "downloading")
            }

    def failures(self) -> dict[str, str]:
        """Model -> the sentence its last download failed with."""
        with self._lock:
            return {m.model: m.error for m in self._models.values() if m.error and m.state == "failed"}

    def start(self) -> None:
        """Download every missing model, in order, on one background thread."""
        with self._lock:
            self._ensure_thread()

    def wait(
        self,
        model: str,
        emit: Callable[[Progress], None] | None,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> None:
        """Return once `model`'s files are here (at once when nothing was missing), emitting
        ``Progress("download", ...)`` whenever the percentage moves and once at 100 %.

        Raises the download's ModelError when it failed, and Cancelled when `should_stop`
        says so (the download goes on for the jobs that still wait)."""
        with self._lock:
            entry = self._models.get(model)
            if entry is None or entry.state == "done":
                return
            if entry.state == "failed" and time.monotonic() - entry.failed_at >= RETRY_AFTER:
                entry.state, entry.error = "waiting", None
                self._ensure_thread()
        shown: int | None = None
        while True:
            with self._lock:
                state, error = entry.state, entry.error
                now = (entry.fraction, entry.done_bytes, entry.total_bytes)
                if state not in ("done", "failed"):
                    self._lock.wait(POLL)
            if state == "failed":
                raise ModelError(error or f"The download of {model} failed.")
            if state == "done":
                if emit is not None:
                    emit(download_progress(1.0, now[2], now[2]))
                return
            if should_stop():
                raise Cancelled()
            if emit is not None and (shown is None or percent(now[0]) != shown):
                shown = percent(now[0])
                emit(download_progress(*now))

    # ---- the background thread --------------------------------------------------------------

    def _ensure_thread(self) -> None:
        """Start the download thread unless it runs (or nothing waits); holds the lock."""
        if self._thread is None and any(m.state == "waiting" for m in self._models.values()):
            self._thread = threading.Thread(
                target=self._run, name=f"fetch-{self.worker}", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        while True:
            with self._lock:
                entry = next((m for m in self._models.values() if m.state == "waiting"), None)
                if entry is None:
                    self._thread = None
                    return
                entry.state, entry.started_at = "downloading", time.monotonic()
                entry.done_bytes = entry.total_bytes = 0
                entry.logged_tenth = -1
            self._fetch(entry)

    def _fetch(self, entry: _Download) -> None:
        log.info(
            "worker %s: %s is not fully downloaded; downloading it in the background (%s)",
            self.worker, entry.model, entry.why,
        )
        try:
            download(entry.wanted, progress=lambda p: self._progress(entry, p))
        except Exception as exc:  # noqa: BLE001 - every failure is this model's error
            message = exc.message if isinstance(exc, PipelineError) else (
                f"The download of {entry.model} failed ({type(exc).__name__}); try again in a "
                "few minutes."
            )
            if (not is_offline() and hub_reachable()) or not _usable_offline(entry.wanted):
                self._finish(entry, error=message)
                return
            # The hub cannot be asked; the loader uses what the cache holds.
            log.warning(
                "worker %s: cannot check %s against the hub (%s); using the files already here",
                self.worker, entry.model, message,
            )
        self._finish(entry)

    def _progress(self, entry: _Download, report: DownloadProgress) -> None:
        with self._lock:
            entry.done_bytes, entry.total_bytes = report.done_bytes, report.total_bytes
            tenth = math.floor(report.fraction * 10) if report.total_bytes else -1
            log_it = tenth > entry.logged_tenth and report.done_bytes < report.total_bytes
            if log_it:
                entry.logged_tenth = tenth
            fraction = entry.fraction
            self._lock.notify_all()
        if log_it:
            log.info(
                "worker %s: downloading %s: %d %% of %s",
                self.worker, entry.model, percent(fraction), size_text(report.total_bytes),
            )

    def _finish(self, entry: _Download, *, error: str | None = None) -> None:
        seconds = time.monotonic() - entry.started_at
        with self._lock:
            entry.state = "failed" if error else "done"
            entry.error = error
            entry.failed_at = time.monotonic()
            total = entry.total_bytes
            self._lock.notify_all()
        if error:
            log.error("worker %s: cannot download %s: %s", self.worker, entry.model, error)
        elif total:
            log.info(
                "worker %s: downloaded %s: 100 %% of %s in %.0f s",
                self.worker, entry.model, size_text(total), seconds,
            )
        else:
            log.info("worker %s: %s: every file was already here", self.worker, entry.model)
