"""A stand-in for the Hugging Face hub on 127.0.0.1, answering what huggingface_hub 2.4 asks.

Tests point ``HF_ENDPOINT`` at :attr:`HubServer.endpoint`. What huggingface_hub 2.4 sends,
and what is answered (read from ``hf_api.py`` and ``file_download.py``):

- ``HfApi.model_info(repo, files_metadata=True)``: ``GET /api/models/{repo}?blobs=True`` (or
  ``/api/models/{repo}/revision/{rev}``) -> JSON with ``id``, ``sha`` (the commit) and
  ``siblings`` ``[{"rfilename"}]``, with ``size``, ``blobId`` and ``lfs`` when ``blobs`` is
  asked. A gated repo's info is public (``"gated": "manual"``), as on the hub.
- ``hf_hub_download``: ``HEAD /{repo}/resolve/{rev}/{file}`` (``rev``: ``main`` or the
  commit), then ``GET`` of the location. A regular file answers 200 with ``ETag`` (its git
  blob id), ``X-Repo-Commit`` and ``Content-Length``. An LFS file (weights, by extension)
  answers 302 with ``X-Linked-Etag`` (its sha256), ``X-Linked-Size``, ``X-Repo-Commit`` and a
  ``Location`` on another origin (``http://localhost:{port}/cdn/{sha256}?repo=…&file=…``,
  standing for the CDN's signed URL), which huggingface_hub does not follow on the HEAD and
  fetches without the ``Authorization`` header. No ``X-Xet-*`` header or ``Link`` is ever
  sent, so the plain HTTP path (``http_get``) is taken even with hf_xet installed.
- Bodies honour ``Range: bytes=a-`` / ``bytes=a-b`` (206 with ``Content-Range``), which is how
  ``http_get`` resumes a cut connection.
- Errors as the hub sets them: unknown repo -> 404 ``X-Error-Code: RepoNotFound``; unknown
  file -> 404 ``EntryNotFound`` (with ``X-Repo-Commit``); unknown revision -> 404
  ``RevisionNotFound``; gated repo without ``Authorization: Bearer <its token>`` -> 401 (no
  header) or 403 (another token) with ``X-Error-Code: GatedRepo``.

Faults: :meth:`HubServer.cut` sends a file's headers and only the first N bytes of its body,
then closes the connection; :meth:`HubServer.drop` closes the connection without answering.
Every request is recorded (:attr:`HubServer.requests`): method, path, query, Range header,
whether an Authorization header came, and the repo and file it was about.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Self
from urllib.parse import parse_qs, quote, unquote, urlsplit

LFS_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth", ".ckpt", ".onnx", ".msgpack",
                ".png", ".jpg", ".gif", ".mp4")


@dataclass(frozen=True)
class Logged:
    """One request the server got."""

    method: str
    path: str
    query: str
    range: str | None
    authorization: bool
    kind: str
    """"api", "resolve" or "cdn"."""
    repo_id: str | None = None
    file: str | None = None
    status: int = 0


@dataclass
class Repo:
    repo_id: str
    files: dict[str, bytes]
    token: str | None = None
    """A gated repo's files need ``Authorization: Bearer <token>``."""
    sha: str = ""
    etags: dict[str, str] = field(default_factory=dict)
    lfs: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        digest = hashlib.sha1()
        for name in sorted(self.files):
            data = self.files[name]
            if name.endswith(LFS_SUFFIXES):
                self.lfs[name] = self.etags[name] = hashlib.sha256(data).hexdigest()
            else:
                self.etags[name] = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
            digest.update(f"{name}\0{self.etags[name]}\n".encode())
        self.sha = digest.hexdigest()


class HubServer:
    """Serves repos like the hub; use as a context manager or call start()/stop()."""

    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.requests: list[Logged] = []
        self._faults: dict[tuple[str, str], list[tuple[str, int]]] = {}
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None

    # --- setup ---

    def add_repo(
        self, repo_id: str, files: Mapping[str, bytes] | Path, *, token: str | None = None
    ) -> Repo:
        """Serve `files` (name -> bytes, or a folder read recursively) as `repo_id`; a
        `token` makes it gated."""
        if isinstance(files, Path):
            files = {
                p.relative_to(files).as_posix(): p.read_bytes()
                for p in sorted(files.rglob("*")) if p.is_file()
            }
        repo = Repo(repo_id, dict(files), token=token)
        self.repos[repo_id] = repo
        return repo

    def cut(self, repo_id: str, file: str, after: int, times: int = 1) -> None:
        """The next `times` GETs of the file's body stop after `after` bytes (connection closed)."""
        self._faults.setdefault((repo_id, file), []).extend([("cut", after)] * times)

    def drop(self, repo_id: str, file: str, times: int = 1) -> None:
        """The next `times` GETs of the file's body get no answer (connection closed)."""
        self._faults.setdefault((repo_id, file), []).extend([("drop", 0)] * times)

    def clear_faults(self) -> None:
        self._faults.clear()

    # --- what happened ---

    def fetched(self) -> list[tuple[str, str]]:
        """(repo, file) of every GET that returned file bytes (200 or 206), in order."""
        return [
            (r.repo_id, r.file) for r in self.requests  # type: ignore[misc]
            if r.method == "GET" and r.kind in ("resolve", "cdn") and r.status in (200, 206)
        ]

    def gets_of(self, repo_id: str, file: str) -> list[Logged]:
        return [
            r for r in self.requests
            if r.method == "GET" and r.kind in ("resolve", "cdn")
            and (r.repo_id, r.file) == (repo_id, file)
        ]

    def reset_log(self) -> None:
        with self._lock:
            self.requests.clear()

    # --- lifecycle ---

    @property
    def port(self) -> int:
        assert self._httpd is not None
        return self._httpd.server_address[1]

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> HubServer:
        server = self

        class Handler(_Handler):
            hub = server

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- used by the handler ---

    def _log(self, entry: Logged) -> None:
        with self._lock:
            self.requests.append(entry)

    def _next_fault(self, repo_id: str, file: str) -> tuple[str, int] | None:
        with self._lock:
            queue = self._faults.get((repo_id, file))
            return queue.pop(0) if queue else None


class _Handler(BaseHTTPRequestHandler):
    hub: HubServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        return

    def do_HEAD(self) -> None:
        self._handle(head=True)

    def do_GET(self) -> None:
        self._handle(head=False)

    # --- routing ---

    def _handle(self, *, head: bool) -> None:
        url = urlsplit(self.path)
        raw = url.path
        self._entry: dict[str, object] = {
            "method": self.command, "path": unquote(raw), "query": url.query,
            "range": self.headers.get("Range"),
            "authorization": self.headers.get("Authorization") is not None, "kind": "other",
        }
        if raw.startswith("/api/models/"):
            rest = unquote(raw[len("/api/models/"):])
            repo_id, _, revision = rest.partition("/revision/")
            self._entry.update(kind="api", repo_id=repo_id)
            self._api(repo_id, revision or "main", "blobs" in parse_qs(url.query))
        elif raw.startswith("/cdn/"):
            query = parse_qs(url.query)
            repo_id, file = query["repo"][0], query["file"][0]
            self._entry.update(kind="cdn", repo_id=repo_id, file=file)
            self._cdn(repo_id, file, head=head)
        elif "/resolve/" in raw:
            repo_part, _, rest = raw.partition("/resolve/")
            repo_id = unquote(repo_part.lstrip("/"))
            revision, _, file = rest.partition("/")
            revision, file = unquote(revision), unquote(file)
            self._entry.update(kind="resolve", repo_id=repo_id, file=file)
            self._resolve(repo_id, revision, file, head=head)
        else:
            self._error(404, "NotFound", "Not found", head=head)

    def _status(self, code: int) -> None:
        """Record the request, then start the answer: a client that got its bytes finds the
        request in the log already."""
        self.hub._log(Logged(**self._entry, status=code))  # type: ignore[arg-type]
        if code:
            self.send_response(code)

    def _api(self, repo_id: str, revision: str, blobs: bool) -> int:
        repo = self.hub.repos.get(repo_id)
        if repo is None:
            return self._error(404, "RepoNotFound", "Repository not found", head=False)
        if revision not in ("main", repo.sha):
            return self._error(404, "RevisionNotFound", "Invalid rev id", head=False)
        siblings = []
        for name, data in repo.files.items():
            sibling: dict[str, object] = {"rfilename": name}
            if blobs:
                sibling["size"] = len(data)
                sibling["blobId"] = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
                if name in repo.lfs:
                    sibling["lfs"] = {"size": len(data), "sha256": repo.lfs[name], "pointerSize": 134}
            siblings.append(sibling)
        body = json.dumps({
            "_id": repo.sha[:24], "id": repo_id, "modelId": repo_id, "sha": repo.sha,
            "private": False, "gated": "manual" if repo.token else False, "disabled": False,
            "library_name": "diffusers", "tags": [], "siblings": siblings,
        }).encode()
        self._status(200)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        return 200

    def _resolve(self, repo_id: str, revision: str, file: str, *, head: bool) -> int:
        repo = self.hub.repos.get(repo_id)
        if repo is None:
            return self._error(404, "RepoNotFound", "Repository not found", head=head)
        if repo.token is not None:
            auth = self.headers.get("Authorization")
            if auth != f"Bearer {repo.token}":
                code = 401 if auth is None else 403
                message = (
                    f"Access to model {repo_id} is restricted. You must have access to it and be "
                    "authenticated to access it. Please log in." if auth is None else
                    f"Access to model {repo_id} is restricted and you are not in the authorized "
                    f"list. Visit https://huggingface.co/{repo_id} to ask for access."
                )
                return self._error(code, "GatedRepo", message, head=head)
        if revision not in ("main", repo.sha):
            return self._error(404, "RevisionNotFound", "Invalid rev id", head=head)
        if file not in repo.files:
            return self._error(404, "EntryNotFound", "Entry not found", head=head,
                               extra={"X-Repo-Commit": repo.sha})
        data = repo.files[file]
        if file in repo.lfs:
            location = (
                f"http://localhost:{self.hub.port}/cdn/{repo.lfs[file]}"
                f"?repo={quote(repo_id, safe='')}&file={quote(file, safe='')}&Expires=9999999999"
            )
            body = f"Found. Redirecting to {location}".encode()
            self._status(302)
            self.send_header("Location", location)
            self.send_header("X-Repo-Commit", repo.sha)
            self.send_header("X-Linked-Etag", f'"{repo.lfs[file]}"')
            self.send_header("X-Linked-Size", str(len(data)))
            self.send_header("ETag", f'"{repo.etags[file]}"')
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not head:
                self.wfile.write(body)
            return 302
        return self._body(repo_id, file, data, etag=repo.etags[file], commit=repo.sha, head=head)

    def _cdn(self, repo_id: str, file: str, *, head: bool) -> int:
        repo = self.hub.repos.get(repo_id)
        if repo is None or file not in repo.files:
            return self._error(404, "NotFound", "Not found", head=head)
        return self._body(repo_id, file, repo.files[file], etag=repo.lfs[file], commit=None,
                          head=head)

    # --- answers ---

    def _body(
        self, repo_id: str, file: str, data: bytes, *, etag: str, commit: str | None, head: bool
    ) -> int:
        start, end, status = 0, len(data) - 1, 200
        wanted = self.headers.get("Range")
        if wanted:
            first, _, last = wanted.removeprefix("bytes=").partition("-")
            start = int(first) if first else len(data) - int(last)
            end = int(last) if first and last else len(data) - 1
            if start >= len(data) or start > end:
                self._status(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return 416
            status = 206
        fault = None if head else self.hub._next_fault(repo_id, file)
        if fault is not None and fault[0] == "drop":
            self._status(0)
            self.close_connection = True
            return 0
        chunk = data[start : end + 1]
        self._status(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(chunk)))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", f'"{etag}"')
        if commit:
            self.send_header("X-Repo-Commit", commit)
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.end_headers()
        if head:
            return status
        if fault is not None:  # "cut": part of the body, then the connection goes away
            self.wfile.write(chunk[: fault[1]])
            self.wfile.flush()
            self.close_connection = True
            return status
        self.wfile.write(chunk)
        return status

    def _error(
        self, code: int, error_code: str, message: str, *, head: bool,
        extra: Mapping[str, str] | None = None,
    ) -> int:
        body = json.dumps({"error": message}).encode()
        self._status(code)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("X-Error-Code", error_code)
        self.send_header("X-Error-Message", message)
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)
        return code

