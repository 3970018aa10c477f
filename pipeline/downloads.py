"""Downloading a model's weights from the Hugging Face hub before it is loaded.

What to fetch: :func:`wanted_for_preset` turns a preset into :class:`Wanted` items (its
diffusers repo, a single-file checkpoint, LoRA files, GGUF files); :func:`files_for` picks,
from a diffusers repo's file listing, exactly the files ``DiffusionPipeline.from_pretrained``
loads (the same rules as diffusers' ``variant_compatible_siblings`` and ``_get_ignore_patterns``,
see :func:`files_for`), so a 14B repo does not bring its original-format checkpoints, its
``.bin`` duplicates or its README images along.

How: :func:`download` lists each repo once (``HfApi.model_info(files_metadata=True)``: names,
sizes and the commit), pins that commit, skips files already complete in the hub cache and
fetches the rest with ``hf_hub_download`` into :func:`~pipeline.backends.hub.hub_cache_dir`,
the cache the loader reads. huggingface_hub 2.4 resumes a file whose connection breaks
mid-body with an HTTP ``Range`` request (``http_get`` retries up to five times, the count
reset whenever bytes arrive); a file cut off for good is thrown away, so running the download
again keeps every finished file and starts the cut one over.

Every failure is one :class:`~contract.ModelError` sentence naming the repo and what to do.
The token (the argument, or ``HF_TOKEN`` read by huggingface_hub itself) is never written into
a message or a log line.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from contract import ModelError, PipelineError, one_line
from pipeline.backends.hub import (
    cached_file,
    hub_cache_dir,
    hub_reachable,
    is_cached,
    is_offline,
)
from pipeline.backends.loader import SINGLE_FILE_COMPONENTS
from pipeline.backends.model_index import component_names
from pipeline.presets import Preset

logger = logging.getLogger("pipeline")

PROGRESS_INTERVAL = 0.25
"""Seconds between two progress reports (the final one is always sent)."""


@dataclass(frozen=True)
class Wanted:
    """What to fetch from one hub repo.

    ``files`` None: the repo is a diffusers pipeline and :func:`files_for` picks its files (a
    repo without ``model_index.json``, e.g. a LoRA repo, gives its only ``.safetensors`` file).
    ``files`` set: exactly those files (a single-file checkpoint, LoRAs, GGUF files)."""

    repo_id: str
    files: tuple[str, ...] | None = None
    skip_weights_of: frozenset[str] = frozenset()
    """Components whose weights come from elsewhere (a single-file checkpoint's transformer and
    vae, GGUF experts); their configs are still fetched."""
    variant: str | None = None
    """Weight variant to prefer ("fp16" -> ``*.fp16.safetensors``) where a component has it."""


@dataclass(frozen=True)
class DownloadProgress:
    """Bytes fetched so far over everything one :func:`download` call fetches."""

    repo_id: str
    done_bytes: int
    total_bytes: int
    file: str | None = None
    """The file being fetched (None on the final report)."""

    @property
    def fraction(self) -> float:
        return 1.0 if self.total_bytes <= 0 else min(1.0, self.done_bytes / self.total_bytes)


# --- which files ----------------------------------------------------------------------------

_PREFIXES = "diffusion_pytorch_model|model|pytorch_model"
"""Weight file stems diffusers and transformers save (diffusers' ``weight_prefixes``)."""
_SHARD = r"\d{5}-of-\d{5}"
_WEIGHT_SUFFIXES = (
    ".safetensors", ".bin", ".onnx", ".onnx_data", ".pb", ".msgpack", ".h5", ".gguf", ".pt",
    ".pth", ".ckpt", ".flashpack",
)
_JUNK_SUFFIXES = (
    ".md", ".png", ".jpg", ".jpeg", ".gif", ".webp", ".mp4", ".webm", ".pdf",
)


def _is_weight(name: str) -> bool:
    return name.endswith(_WEIGHT_SUFFIXES)


def _is_weight_index(name: str) -> bool:
    """``model.safetensors.index.json``, ``….index.fp16.json``, ``….fp16.index.json``."""
    return name.endswith(".json") and ".index." in name.rsplit("/", 1)[-1]


def _is_junk(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    return base.startswith(".") or base.lower().endswith(_JUNK_SUFFIXES)


def _weights_of(names: Sequence[str], suffix: str, variant: str | None) -> list[str]:
    """The weight files (and index) of one format among a component folder's file names:
    the variant's when the folder has them (current, then legacy shard naming), else the
    plain ones; as diffusers' ``variant_compatible_siblings`` does per component."""
    ext = re.escape(suffix.lstrip("."))
    groups: list[tuple[re.Pattern[str], re.Pattern[str]]] = []
    if variant:
        v = re.escape(variant)
        groups.append((
            re.compile(rf"({_PREFIXES})\.({v}|{v}-{_SHARD})\.{ext}"),
            re.compile(rf"({_PREFIXES})\.{ext}\.index\.{v}\.json"),
        ))
        groups.append((
            re.compile(rf"({_PREFIXES})-{_SHARD}\.{v}\.{ext}"),
            re.compile(rf"({_PREFIXES})\.{ext}\.{v}\.index\.json"),
        ))
    groups.append((
        re.compile(rf"({_PREFIXES})(-{_SHARD})?\.{ext}"),
        re.compile(rf"({_PREFIXES})\.{ext}\.index\.json"),
    ))
    for files_re, index_re in groups:
        files = [n for n in names if files_re.fullmatch(n)]
        if files:
            return files + [n for n in names if index_re.fullmatch(n)]
    return []


def files_for(
    wanted: Wanted, listing: Sequence[str], model_index: Mapping[str, Any] | None = None
) -> list[str]:
    """The files of `wanted` to fetch, from its repo's `listing` (repo-relative names).

    Exact files (``wanted.files``) must be in the listing. A diffusers repo needs its parsed
    `model_index` (:func:`download` fetches ``model_index.json`` first) and gives:
    ``model_index.json``; for each component model_index.json names (not null), every file of
    its folder that is not a weight file (configs, tokenizer files), then its weights unless
    skipped: ``.safetensors`` if the folder has any, else ``.bin``; in the wanted variant when
    the folder has it (``*.fp16.safetensors``, ``*.fp16-00001-of-00002.safetensors`` plus
    ``*.safetensors.index.fp16.json``), else the plain ones (a single file, or the
    ``*.index.json`` and all its shards). Never: README and images, dotfiles, root-level
    files (original-format checkpoints), folders model_index.json does not name, ONNX, Flax,
    other variants, files listed in ``_ignore_files``.

    Unlike diffusers, the safetensors-or-bin choice is made per component (diffusers falls
    back to ``.bin`` everywhere when one component lacks safetensors); both load the same.
    """
    listed = list(dict.fromkeys(listing))
    if wanted.files is not None:
        missing = [f for f in wanted.files if f not in set(listed)]
        if missing:
            raise ModelError(
                f"Cannot download {missing[0]!r} of {wanted.repo_id!r}: the repo has no such "
                "file; check the file name."
            )
        return list(dict.fromkeys(wanted.files))
    if "model_index.json" not in listed:
        return [_only_safetensors(wanted.repo_id, listed)]
    if model_index is None:
        raise ValueError("files_for needs the model_index.json of a diffusers repo")

    ignored = set(model_index.get("_ignore_files") or ())
    listed = [f for f in listed if f not in ignored]
    chosen = ["model_index.json"]
    for name in component_names(model_index):
        in_folder = [f for f in listed if f.startswith(f"{name}/")]
        if not in_folder:
            raise ModelError(
                f"Cannot download {wanted.repo_id!r}: its model_index.json names a {name!r} "
                "component but the repo has no such folder; pass a complete diffusers repo."
            )
        chosen += [
            f for f in in_folder if not _is_weight(f) and not _is_weight_index(f) and not _is_junk(f)
        ]
        # Weights sit directly in the component's folder (diffusers looks nowhere else).
        direct = [f[len(name) + 1 :] for f in in_folder if f.count("/") == 1]
        if name in wanted.skip_weights_of or not any(_is_weight(f) for f in direct):
            continue
        weights: list[str] = []
        for suffix in (".safetensors", ".bin"):
            weights = _weights_of(direct, suffix, wanted.variant)
            if weights:
                break
        if not weights:
            raise ModelError(
                f"Cannot download {wanted.repo_id!r}: the {name!r} folder has no weights "
                f"diffusers can load{f' (variant {wanted.variant})' if wanted.variant else ''}; "
                "pass another repo or variant."
            )
        chosen += [f"{name}/{w}" for w in weights]
    return chosen


def _only_safetensors(repo_id: str, listing: Sequence[str]) -> str:
    """The one .safetensors file of a repo that is not a diffusers pipeline (a LoRA repo)."""
    found = [f for f in listing if f.endswith(".safetensors")]
    if len(found) != 1:
        raise ModelError(
            f"Cannot download {repo_id!r}: it is not a diffusers pipeline (no model_index.json) "
            f"and holds {len(found)} .safetensors files; name the file to fetch."
        )
    return found[0]


def wanted_for_preset(
    preset: Preset, *, gguf: Mapping[str, tuple[str, str]] | None = None
) -> list[Wanted]:
    """Everything `preset` loads from the hub: its diffusers repo (without the weights of the
    components a single-file checkpoint or `gguf` (component -> (repo, file)) provides), its
    single file, its LoRA files, the GGUF files. LoRAs given as local paths are left out."""
    skip = set(SINGLE_FILE_COMPONENTS) if preset.single_file else set()
    skip |= set(gguf or {})
    wanted = [Wanted(preset.repo_id, skip_weights_of=frozenset(skip), variant=preset.variant)]
    exact: dict[str, list[str]] = {}
    if preset.single_file:
        repo, filename = preset.single_file
        exact.setdefault(repo, []).append(filename)
    for lora in preset.loras:
        if _is_local(lora.source):
            continue
        if lora.weight_name is None:
            wanted.append(Wanted(lora.source))
        else:
            exact.setdefault(lora.source, []).append(lora.weight_name)
    for repo, filename in (gguf or {}).values():
        exact.setdefault(repo, []).append(filename)
    wanted += [Wanted(repo, files=tuple(dict.fromkeys(names))) for repo, names in exact.items()]
    return wanted


def _is_local(source: str) -> bool:
    return source.startswith((".", "/", "~")) or Path(source).expanduser().exists()


# --- downloading ----------------------------------------------------------------------------


@dataclass
class _Plan:
    wanted: Wanted
    sha: str
    files: list[str]
    sizes: dict[str, int]
    missing: list[str] = field(default_factory=list)
    stale: set[str] = field(default_factory=set)
    """Missing files whose cached copy has the wrong size: fetched again with force."""
    linked: set[str] = field(default_factory=set)
    """Missing at this commit but whose content is already in the cache (the repo moved on
    without changing them): fetching only links them, no bytes to count or make room for."""
    paths: dict[str, str] = field(default_factory=dict)

    def to_fetch(self, name: str) -> int:
        """Bytes a missing file will bring."""
        return 0 if name in self.linked else self.sizes.get(name, 0)


class _Reporter:
    """Turns byte counts into throttled :class:`DownloadProgress` reports."""

    def __init__(self, callback: Callable[[DownloadProgress], None] | None, total: int) -> None:
        self.callback = callback
        self.total = total
        self.finished = 0
        self.current = 0
        self.size = 0
        self.repo_id = ""
        self.file: str | None = None
        self.last = -1e9

    def start(self, repo_id: str, file: str, size: int) -> None:
        self.repo_id, self.file, self.size, self.current = repo_id, file, size, 0

    def add(self, n: int) -> None:
        self.current = max(0, self.current + n)
        if self.size:
            self.current = min(self.current, self.size)
        self.emit()

    def file_done(self) -> None:
        self.finished += max(self.size, self.current)
        self.current = 0
        self.emit()

    def emit(self, final: bool = False) -> None:
        if self.callback is None:
            return
        now = time.monotonic()
        if not final and now - self.last < PROGRESS_INTERVAL:
            return
        self.last = now
        done = self.total if final else min(self.finished + self.current, self.total)
        self.callback(
            DownloadProgress(self.repo_id, done, self.total, None if final else self.file)
        )


def _counting_tqdm(on_bytes: Callable[[int], None]) -> type:
    """A silent tqdm class for ``hf_hub_download(tqdm_class=...)`` that hands every byte
    count to `on_bytes`: plain HTTP calls ``update(len(chunk))`` per chunk (and a negative
    update when a server ignores a Range request); Xet downloads update bytes written and
    send network bytes to ``update_transfer``, ignored here so nothing counts twice."""
    from tqdm import tqdm

    class _Counting(tqdm):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.pop("name", None)
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

        def update(self, n: float | None = 1) -> bool | None:
            if n:
                on_bytes(int(n))
            return None

        def update_transfer(self, n: float | None = 1) -> None:
            return None

        def set_transfer_postfix_str(self, *args: Any, **kwargs: Any) -> None:
            return None

    return _Counting


def download(
    wanted: Sequence[Wanted],
    *,
    progress: Callable[[DownloadProgress], None] | None = None,
    token: str | None = None,
) -> list[Path]:
    """Fetch what `wanted` names into the hub cache; files already there are not fetched again.

    Returns, in order, the snapshot folder of each diffusers repo and the path of each exact
    file. `progress` gets :class:`DownloadProgress` over the bytes still missing (known up
    front from the listings), at most every :data:`PROGRESS_INTERVAL` seconds plus a final
    report at the total; an exception it raises (a cancel) stops the download and is raised
    as is. `token` (default: ``HF_TOKEN``) is used for gated and private repos. Offline
    (``HF_HUB_OFFLINE``) it succeeds without a request when everything is already cached.
    Failures raise :class:`ModelError`."""
    items = list(wanted)
    if not items:
        return []
    cache = hub_cache_dir()
    if is_offline():
        return _offline(items, cache)
    endpoint = _endpoint()
    if not hub_reachable():
        raise ModelError(
            f"Cannot download {items[0].repo_id!r}: the Hugging Face hub at {endpoint} is "
            "unreachable; check the network (or HF_ENDPOINT) and run the download again."
        )
    silent = _counting_tqdm(lambda n: None)
    listings: dict[str, tuple[str, dict[str, int], dict[str, str]]] = {}
    plans = []
    for item in items:
        with _failures(item.repo_id, cache, token, endpoint, stage="list"):
            plans.append(_plan(item, cache, endpoint, token, listings, silent))
    remaining = sum(plan.to_fetch(f) for plan in plans for f in plan.missing)
    _check_space(cache, remaining, items[0].repo_id)
    if remaining:
        logger.info(
            "downloading %d files (%s) into %s",
            sum(len(p.missing) for p in plans), size_text(remaining), cache,
        )
    reporter = _Reporter(progress, remaining)
    counter = _counting_tqdm(reporter.add)
    for plan in plans:
        repo_id = plan.wanted.repo_id
        for name in plan.missing:
            size = plan.to_fetch(name)
            reporter.start(repo_id, name, size)
            left = remaining - reporter.finished
            with _failures(repo_id, cache, token, endpoint, stage="fetch", file=name, need=left):
                plan.paths[name] = _fetch(
                    repo_id, name, plan.sha, cache, endpoint, token, counter,
                    force=name in plan.stale,
                )
            reporter.file_done()
        with _failures(repo_id, cache, token, endpoint, stage="fetch"):
            _point_main_at(cache, repo_id, plan.sha)
    reporter.repo_id = reporter.repo_id or items[-1].repo_id
    reporter.emit(final=True)
    return [path for plan in plans for path in _results(plan)]


def _endpoint() -> str:
    from huggingface_hub import constants

    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def _plan(
    item: Wanted,
    cache: str,
    endpoint: str,
    token: str | None,
    listings: dict[str, tuple[str, dict[str, int], dict[str, str]]],
    silent: type,
) -> _Plan:
    """List the repo (once per call), fetch model_index.json if needed, pick the files and
    find which are not complete in the cache yet."""
    if item.repo_id not in listings:
        from huggingface_hub import HfApi

        info = HfApi(endpoint=endpoint).model_info(item.repo_id, files_metadata=True, token=token)
        sizes = {s.rfilename: int(s.size or 0) for s in info.siblings or ()}
        # How the cache names each file's content (blobs/<id>): the LFS sha256, else the git
        # blob id, as huggingface_hub stores them.
        blobs = {
            s.rfilename: (s.lfs.sha256 if s.lfs else s.blob_id) or "" for s in info.siblings or ()
        }
        if not info.sha:
            raise ModelError(f"Cannot download {item.repo_id!r}: the hub gave no commit for it.")
        listings[item.repo_id] = (info.sha, sizes, blobs)
    sha, sizes, blobs = listings[item.repo_id]
    plan = _Plan(item, sha, [], sizes)
    model_index = None
    if item.files is None and "model_index.json" in sizes:
        path, stale = _cached(item.repo_id, "model_index.json", sha, cache, sizes["model_index.json"])
        if path is None:
            path = _fetch(
                item.repo_id, "model_index.json", sha, cache, endpoint, token, silent, force=stale
            )
        plan.paths["model_index.json"] = path
        try:
            model_index = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):
            raise ModelError(
                f"Cannot download {item.repo_id!r}: its model_index.json is not valid JSON; "
                "pass another repo."
            ) from None
        if not isinstance(model_index, dict):
            raise ModelError(f"Cannot download {item.repo_id!r}: its model_index.json is not a dict.")
    plan.files = files_for(item, list(sizes), model_index)
    for name in plan.files:
        if name in plan.paths:
            continue
        path, stale = _cached(item.repo_id, name, sha, cache, sizes.get(name))
        if path is None:
            plan.missing.append(name)
            if stale:
                plan.stale.add(name)
            elif _has_blob(cache, item.repo_id, blobs.get(name, ""), sizes.get(name)):
                plan.linked.add(name)
        else:
            plan.paths[name] = path
    return plan


def _cached(
    repo_id: str, name: str, sha: str, cache: str, size: int | None
) -> tuple[str | None, bool]:
    """(snapshot path of `name` at commit `sha` when it is complete in the cache, whether a
    copy of the wrong size sits there instead)."""
    from huggingface_hub import try_to_load_from_cache

    path = try_to_load_from_cache(repo_id, name, cache_dir=cache, revision=sha)
    if not isinstance(path, str):
        return None, False
    try:
        if size and os.path.getsize(path) != size:
            return None, True
    except OSError:
        return None, True
    return path, False


def _has_blob(cache: str, repo_id: str, blob: str, size: int | None) -> bool:
    """Whether the cache already holds this content (complete) under blobs/."""
    if not blob:
        return False
    from huggingface_hub.file_download import repo_folder_name

    path = Path(cache) / repo_folder_name(repo_id=repo_id, repo_type="model") / "blobs" / blob
    try:
        return path.is_file() and (not size or path.stat().st_size == size)
    except OSError:
        return False


def _fetch(
    repo_id: str, name: str, sha: str, cache: str, endpoint: str, token: str | None,
    tqdm_class: type, *, force: bool = False,
) -> str:
    from huggingface_hub import hf_hub_download

    return hf_hub_download(
        repo_id, name, revision=sha, cache_dir=cache, endpoint=endpoint, token=token,
        tqdm_class=tqdm_class, force_download=force,
    )


def _point_main_at(cache: str, repo_id: str, sha: str) -> None:
    """Make ``refs/main`` name the commit just downloaded, as ``snapshot_download`` does:
    ``hf_hub_download`` pinned to a commit writes no ref, and the loader (and diffusers with
    ``local_files_only``) find a repo's files through ``refs/main``."""
    from huggingface_hub.file_download import repo_folder_name

    ref = Path(cache) / repo_folder_name(repo_id=repo_id, repo_type="model") / "refs" / "main"
    if ref.is_file() and ref.read_text().strip() == sha:
        return
    ref.parent.mkdir(parents=True, exist_ok=True)
    tmp = ref.with_name(f".main.{os.getpid()}.tmp")
    tmp.write_text(sha)
    os.replace(tmp, ref)


def _results(plan: _Plan) -> list[Path]:
    if plan.wanted.files is None and "model_index.json" in plan.paths:
        return [Path(plan.paths["model_index.json"]).parent]
    return [Path(plan.paths[name]) for name in plan.files]


def _offline(items: list[Wanted], cache: str) -> list[Path]:
    """Offline: the cached paths when everything is there, else the offline sentence."""
    paths: list[Path] = []
    for item in items:
        if item.files is None:
            index = cached_file(item.repo_id, "model_index.json")
            found = [Path(index).parent] if index and is_cached(item.repo_id) else []
        else:
            files = [cached_file(item.repo_id, name) for name in item.files]
            found = [Path(f) for f in files if f] if all(files) else []
        if not found:
            raise ModelError(
                f"Cannot download {item.repo_id!r}: the Hugging Face hub is unreachable "
                f"(HF_HUB_OFFLINE is set); unset HF_HUB_OFFLINE and run the download again, or "
                f"copy the model into {cache}."
            )
        paths += found
    return paths


def _check_space(cache: str, need: int, repo_id: str) -> None:
    if need <= 0:
        return
    probe = Path(cache)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        free = shutil.disk_usage(probe).free
    except OSError:
        return
    if free < need:
        raise _disk_full(repo_id, cache, need, free)


def _disk_full(repo_id: str, cache: str, need: int, free: int | None = None) -> ModelError:
    have = f", {size_text(free)} free" if free is not None else ""
    return ModelError(
        f"Cannot download {repo_id!r}: not enough disk space in {cache}: need {size_text(need)}"
        f"{have}; free some space or set HF_HUB_CACHE to a bigger disk."
    )


def size_text(n: int) -> str:
    """6.3 GiB, 580 KiB: how a download's size reads in logs and messages."""
    if n >= 2**30:
        return f"{n / 2**30:.1f} GiB"
    if n >= 2**20:
        return f"{n / 2**20:.1f} MiB"
    return f"{max(n, 0) / 1024:.0f} KiB"


@contextmanager
def _failures(
    repo_id: str, cache: str, token: str | None, endpoint: str, *, stage: str,
    file: str | None = None, need: int = 0,
) -> Iterator[None]:
    """Re-raise anything but a PipelineError (a cancel, our own sentences) as one ModelError."""
    try:
        yield
    except PipelineError:
        raise
    except Exception as exc:  # noqa: BLE001 - every failure becomes a sentence
        logger.debug(
            "download of %s failed: %s", repo_id, _scrub(one_line(exc), token)
        )
        raise _sentence(exc, repo_id, cache, endpoint, stage=stage, file=file, need=need) from None


def _scrub(text: str, token: str | None) -> str:
    for secret in (token, os.environ.get("HF_TOKEN"), os.environ.get("HUGGING_FACE_HUB_TOKEN")):
        if secret and secret.strip():
            text = text.replace(secret.strip(), "***")
    return text


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _is_transport_error(exc: BaseException) -> bool:
    """httpx2's (or httpx's) network errors, without importing either."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    return bool(names & {"TransportError", "TimeoutException", "NetworkError", "ProtocolError"})


def _sentence(
    exc: Exception, repo_id: str, cache: str, endpoint: str, *, stage: str,
    file: str | None, need: int,
) -> ModelError:
    from huggingface_hub.errors import (
        DisabledRepoError,
        FileMetadataError,
        GatedRepoError,
        HfHubHTTPError,
        HFValidationError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    what = f"{file!r} of {repo_id!r}" if file else repr(repo_id)
    interrupted = ModelError(
        f"The download of {what} was interrupted; run the download again to resume (files "
        "already finished are kept)."
    )
    unreachable = ModelError(
        f"Cannot download {repo_id!r}: the Hugging Face hub at {endpoint} is unreachable; check "
        "the network (or HF_ENDPOINT) and run the download again."
    )
    for link in _chain(exc):
        if isinstance(link, OSError) and link.errno == errno.ENOSPC:
            return _disk_full(repo_id, cache, need)
        if isinstance(link, OSError) and link.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return ModelError(
                f"Cannot download {repo_id!r}: cannot write to {cache}; check its permissions "
                "or set HF_HUB_CACHE to a writable folder."
            )
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(exc, GatedRepoError) or status == 403:
        return ModelError(
            f"{repo_id!r} is gated: accept its licence on https://huggingface.co/{repo_id} and "
            "set HF_TOKEN to a token of that account, then run the download again."
        )
    if isinstance(exc, DisabledRepoError):
        return ModelError(f"Cannot download {repo_id!r}: the hub has disabled that repo; pick another.")
    if isinstance(exc, RepositoryNotFoundError):
        return ModelError(
            f"Cannot download {repo_id!r}: the repo was not found on the Hugging Face hub; check "
            "its name (a private repo also needs HF_TOKEN set to a token that can read it)."
        )
    if isinstance(exc, RemoteEntryNotFoundError):
        return ModelError(
            f"Cannot download {what}: the repo has no such file; check the file name."
        )
    if isinstance(exc, RevisionNotFoundError):
        return ModelError(
            f"Cannot download {repo_id!r}: the repo changed while it was downloading; run the "
            "download again."
        )
    if isinstance(exc, HFValidationError):
        return ModelError(f"Cannot download {repo_id!r}: that is not a valid hub repo id.")
    if isinstance(exc, OfflineModeIsEnabled):
        return ModelError(
            f"Cannot download {repo_id!r}: the Hugging Face hub is unreachable (HF_HUB_OFFLINE "
            f"is set); unset HF_HUB_OFFLINE and run the download again, or copy the model into "
            f"{cache}."
        )
    if isinstance(exc, LocalEntryNotFoundError):
        if isinstance(exc.__cause__, FileMetadataError):
            return ModelError(
                f"Cannot download {repo_id!r}: {endpoint} does not answer like the Hugging Face "
                "hub; check HF_ENDPOINT and any proxy."
            )
        return unreachable if stage == "list" else interrupted
    if isinstance(exc, HfHubHTTPError) and status is not None:
        if status == 401:
            return ModelError(
                f"Cannot download {repo_id!r}: the hub refused the token (HTTP 401); check "
                "HF_TOKEN."
            )
        if status == 429:
            return ModelError(
                f"Cannot download {repo_id!r}: the Hugging Face hub is rate-limiting this "
                "machine; wait a few minutes and run the download again (a token in HF_TOKEN "
                "raises the limit)."
            )
        return ModelError(
            f"Cannot download {repo_id!r}: the Hugging Face hub answered HTTP {status}; try "
            "again later."
        )
    if _is_transport_error(exc):
        return unreachable if stage == "list" else interrupted
    if isinstance(exc, OSError) and "Consistency check failed" in str(exc):
        return interrupted
    return ModelError(
        f"Cannot download {repo_id!r} ({type(exc).__name__}); run the download again."
    )


# --- the CLI's progress bar -----------------------------------------------------------------


@contextmanager
def progress_bar(
    stream: TextIO | None = None, *, desc: str = "Downloading"
) -> Iterator[Callable[[DownloadProgress], None]]:
    """One tqdm bar over all bytes of a :func:`download`, on stderr::

        with progress_bar() as report:
            download(wanted_for_preset(preset), progress=report)
    """
    from tqdm import tqdm

    bar = tqdm(
        total=None, unit="B", unit_scale=True, unit_divisor=1024, desc=desc,
        file=stream if stream is not None else sys.stderr, dynamic_ncols=True,
    )

    def report(p: DownloadProgress) -> None:
        if bar.total != p.total_bytes:
            bar.total = p.total_bytes
        bar.set_postfix_str(p.file.rsplit("/", 1)[-1] if p.file else "", refresh=False)
        bar.update(p.done_bytes - bar.n)

    try:
        yield report
    finally:
        bar.close()
