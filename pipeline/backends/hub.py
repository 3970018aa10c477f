"""What the local Hugging Face hub cache holds, and whether the hub can be reached at all.

huggingface_hub reads HF_HOME, HF_HUB_CACHE and HF_HUB_OFFLINE once, at import; a worker (and
the tests) may set them later, so the values are read again here on every call and passed to
huggingface_hub's own lookups. Only :func:`fetch_files` downloads, when a load needs a file.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from contract import ModelError
from pipeline.backends.model_index import CONFIG_FILES, component_names

_reachable: dict[str, bool] = {}


def is_offline() -> bool:
    """HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) as set now, not only at import time."""
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return bool(constants.HF_HUB_OFFLINE) or env.strip().upper() in constants.ENV_VARS_TRUE_VALUES


def hub_cache_dir() -> str:
    """The hub cache directory as the environment says now (HF_HUB_CACHE, then HF_HOME)."""
    from huggingface_hub import constants

    if os.environ.get("HF_HUB_CACHE"):
        return os.path.expanduser(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return os.path.join(os.path.expanduser(os.environ["HF_HOME"]), "hub")
    return constants.HF_HUB_CACHE


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the hub endpoint accepts a TCP connection (cached per process); False offline.

    One connect, not an HTTP request: huggingface_hub's own calls would wait out their retries
    on a machine without a route, and resolving a model must fail in seconds."""
    if is_offline():
        return False
    from huggingface_hub import constants

    endpoint = os.environ.get("HF_ENDPOINT") or constants.ENDPOINT
    url = urlparse(endpoint)
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme != "http" else 80)
    key = f"{host}:{port}"
    if key not in _reachable:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            _reachable[key] = True
        except OSError:
            _reachable[key] = False
    return _reachable[key]


def cached_file(repo_id: str, filename: str) -> str | None:
    """Path of `filename` of `repo_id` in the local hub cache, or None. Never touches the network."""
    from huggingface_hub import try_to_load_from_cache

    try:
        path = try_to_load_from_cache(repo_id, filename, cache_dir=hub_cache_dir())
    except Exception:  # malformed ids raise validation errors
        return None
    return path if isinstance(path, str) else None


def is_cached(repo_id: str) -> bool:
    """Whether model_index.json and every component's config of `repo_id` are in the cache.

    Configs stand in for weights: a partial download usually lacks whole components.
    """
    index_path = cached_file(repo_id, "model_index.json")
    if index_path is None:
        return False
    try:
        model_index = json.loads(Path(index_path).read_text())
    except (OSError, ValueError):
        return False
    return all(
        any(cached_file(repo_id, f"{name}/{config}") for config in CONFIG_FILES)
        for name in component_names(model_index)
    )


def missing_hub_model(repo_id: str) -> ModelError:
    """The error for a repo that is neither cached nor downloadable from here."""
    why = " (HF_HUB_OFFLINE is set)" if is_offline() else ""
    return ModelError(
        f"Model {repo_id!r} not found locally and the Hugging Face hub is unreachable{why}; "
        f"download it first with `huggingface-cli download {repo_id}` or pass a local directory."
    )


_LOAD_DOWNLOADS: ContextVar[Callable[[Any], None] | None] = ContextVar("load_downloads", default=None)


@contextmanager
def downloads_shown_to(report: Callable[[Any], None] | None) -> Iterator[None]:
    """Files a load must still download while `report` is set (on this thread) are fetched by
    :func:`pipeline.downloads.download`, `report` getting its DownloadProgress: a job whose
    model needs a file the background fetch did not plan (the GGUF files of the lower tier a
    low-memory retry picks, a LoRA) shows the download and pauses its timeout, instead of
    waiting silently inside "Loading the model"."""
    token = _LOAD_DOWNLOADS.set(report)
    try:
        yield
    finally:
        _LOAD_DOWNLOADS.reset(token)


def fetch_file(repo_id: str, filename: str, what: str) -> str:
    """The local path of one file of a hub repo: from the cache, or downloaded when the hub is
    reachable. `what` names it in the error ("The LoRA", "The checkpoint")."""
    return fetch_files([(repo_id, filename)], what)[0]


def fetch_files(files: Sequence[tuple[str, str]], what: str) -> list[str]:
    """The local paths of (repo id, file name) pairs, the missing ones downloaded together (one
    progress over all of them, see :func:`downloads_shown_to`)."""
    paths = [cached_file(repo_id, filename) for repo_id, filename in files]
    missing = [pair for pair, path in zip(files, paths, strict=True) if path is None]
    if not missing:
        return [path for path in paths if path is not None]
    if not hub_reachable():
        repo_id, filename = missing[0]
        why = " (HF_HUB_OFFLINE is set)" if is_offline() else ""
        raise ModelError(
            f"{what} {filename!r} of {repo_id!r} is not downloaded and the Hugging Face hub is "
            f"unreachable{why}; get it with `huggingface-cli download {repo_id} {filename}`."
        )
    report = _LOAD_DOWNLOADS.get()
    if report is not None:
        from pipeline.downloads import Wanted, download

        download([Wanted(repo_id, files=(filename,)) for repo_id, filename in missing], progress=report)
    return [
        path or _download_one(repo_id, filename, what)
        for (repo_id, filename), path in zip(files, paths, strict=True)
    ]


def _download_one(repo_id: str, filename: str, what: str) -> str:
    cached = cached_file(repo_id, filename)
    if cached is not None:
        return cached
    from huggingface_hub import hf_hub_download

    try:
        return hf_hub_download(repo_id, filename, cache_dir=hub_cache_dir())
    except Exception as exc:  # noqa: BLE001 - a missing repo or file, no access, a cut download
        raise ModelError(
            f"Cannot download {what.lower()} {filename!r} of {repo_id!r} ({type(exc).__name__}); "
            f"check the name and your access, or get it with `huggingface-cli download {repo_id} "
            f"{filename}`."
        ) from None
