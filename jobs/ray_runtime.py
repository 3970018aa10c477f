"""Starting, joining and watching Ray from the bot's process.

No RAY_ADDRESS: the bot starts a private local Ray instance (nothing for the operator to
install or run). RAY_ADDRESS set: the bot joins that cluster as a driver. Every failure is
one line for the operator (RayUnavailable), within about CONNECT_TIMEOUT seconds.

Ray's own processes can die under the bot (the kernel's OOM killer picks the raylet while a
model loads; a cluster head reboots). :class:`RayRuntime` notices within seconds, with TCP
probes that never block the event loop, and brings Ray back with backoff; the dispatcher
puts the jobs that were in flight back in the queue meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import ray

from contract import one_line

log = logging.getLogger("jobs.ray")

CONNECT_TIMEOUT = 30.0
"""Longest wait for Ray at RAY_ADDRESS before start-up gives up (the TCP probe is faster)."""
PROBE_TIMEOUT = 3.0
GCS_PATIENCE = "31536000"
"""Seconds a Ray driver waits for a lost GCS before Ray exits the whole process (its default,
60 s, would take Discord down with it): the bot decides when to reconnect, not Ray."""
INLINE_BYTES = str(256 * 2**20)
"""Task arguments and results up to this size travel inside Ray's RPCs instead of through the
object store (plasma), in both directions. A driver whose plasma connection breaks (the
raylet died) is terminated by Ray on its next use of it, Discord client and all; photos and
MP4s are far smaller than this, so the bot never uses plasma at all."""


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
    _survive_ray_deaths()
    if address is not None:
        # ray.init against something that is not a healthy Ray cluster retries for
        # minutes, so a throwaway process tries first, within a bounded time.
        await _probe_cluster(address, CONNECT_TIMEOUT)
    try:
        # Off the event loop: starting Ray takes seconds, and Discord must be answered.
        await asyncio.to_thread(_init, address, cpu_workers)
    except Exception as exc:  # noqa: BLE001 - any failure here is one line
        if address is None:
            raise RayUnavailable(f"Cannot start a local Ray instance: {one_line(exc, 200)}") from None
        raise RayUnavailable(_unreachable(address, one_line(exc, 200))) from None
    return True


LOOPBACK_ONLY = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
"""Ray's single-machine mode (its default on macOS and Windows), set to "0": every node of a
private Ray gets the loopback address, and Ray binds its servers to the node's address."""


def _loopback_only() -> None:
    """A private local Ray is reached only from this machine, so nothing of it may listen on
    the network: on Linux Ray would give the node the machine's external address and bind its
    GCS, raylet, object manager and workers to it (and to 0.0.0.0 and ::). The processes Ray
    starts read the setting from the environment; this process imported Ray before, so its
    copy of the constant is set too (Ray reads it at call time)."""
    os.environ[LOOPBACK_ONLY] = "0"
    try:
        from ray._private import ray_constants

        ray_constants.ENABLE_RAY_CLUSTER = False
    except (ImportError, AttributeError):  # another Ray layout: the environment still holds
        pass


def _init(address: str | None, cpu_workers: int) -> None:
    if address is None:
        _quiet_ray()
        _loopback_only()
        ray.init(
            address="local",
            num_cpus=max(os.cpu_count() or 1, cpu_workers),
            include_dashboard=False,
            logging_level=logging.WARNING,
            log_to_driver=True,
        )
        protect_auth_token()
    else:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=True)


def _survive_ray_deaths() -> None:
    """Settings that keep a dying raylet or GCS from taking the bot's process with it (read
    by Ray at init, inherited by the local Ray processes; an operator's own values win)."""
    os.environ.setdefault("RAY_gcs_rpc_server_reconnect_timeout_s", GCS_PATIENCE)
    os.environ.setdefault("RAY_max_direct_call_object_size", INLINE_BYTES)
    os.environ.setdefault("RAY_task_rpc_inlined_bytes_limit", INLINE_BYTES)


def protect_auth_token(path: Path | None = None) -> None:
    """Ray writes the cluster's auth token (~/.ray/auth_token) readable by every local user;
    whoever reads it can run code on the cluster, so only its owner may."""
    path = path or Path.home() / ".ray" / "auth_token"
    try:
        if path.exists():
            path.parent.chmod(0o700)
            path.chmod(0o600)
    except OSError as exc:
        log.warning("could not restrict %s to its owner: %s", path, exc.strerror or exc)


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
        raise RayUnavailable(_unreachable(address, exc.strerror or one_line(exc, 200))) from None


def _unreachable(address: str, why: str) -> str:
    if "auth" in why.lower():  # the cluster is there; the token is the problem
        return f"Cannot join the Ray cluster at RAY_ADDRESS={address}: {why}."
    return (
        f"Cannot reach the Ray cluster at RAY_ADDRESS={address} ({why}); start it with "
        "`ray start --head` (see README) or leave RAY_ADDRESS empty to run Ray inside the bot."
    )


def _quiet_ray() -> None:
    """A local instance always uses token auth; Ray's notice about it is noise for a bot."""
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(
        logging.ERROR
    )




RuntimeState = Literal["up", "down"]


@dataclass
class RuntimeStatus:
    """What operators see in /queue."""

    state: RuntimeState
    where: str
    """"local" or the cluster's address."""
    since: float
    """Wall-clock time of the last change."""
    tries: int = 0
    """Failed reconnects since it went down."""
    error: str = ""

    def describe(self, now: float | None = None) -> str:
        ago = max(0.0, (now or time.time()) - self.since)
        if self.state == "up":
            return f"Ray ({self.where}): up"
        text = f"Ray ({self.where}): DOWN for {ago:.0f} s, reconnecting"
        if self.tries:
            text += f" (failed {self.tries}×: {self.error})"
        return text


class RayRuntime:
    """The Ray this process drives: connected once, watched, brought back when it dies.

    Only a Ray the bot started or joined itself is watched and restarted; one that an
    embedding application (or a test) initialised is its owner's business.

    Args:
        address: RAY_ADDRESS, or None for a private local instance.
        cpu_workers: CPU workers wanted (a local instance gets at least that many CPUs).
        retry_cap: longest pause between reconnect attempts.
    """

    def __init__(self, address: str | None, *, cpu_workers: int = 1, retry_cap: float = 60.0) -> None:
        self.address = (address or "").strip() or None
        self.cpu_workers = cpu_workers
        self.retry_cap = retry_cap
        self.owned = False
        self.status = RuntimeStatus("down", self.address or "local", time.time())
        self._endpoints: list[tuple[str, int]] = []

    @property
    def up(self) -> bool:
        return self.status.state == "up"

    async def start(self) -> None:
        """Connect (RayUnavailable with one line if not possible) and learn what to probe."""
        self.owned = await connect_ray(self.address, cpu_workers=self.cpu_workers)
        self._endpoints = await asyncio.to_thread(_endpoints)
        self.status = RuntimeStatus("up", self.status.where, time.time())

    async def alive(self) -> bool:
        """Whether the GCS and this machine's raylet still accept connections. A killed
        process's port refuses at once; a hung one times out after PROBE_TIMEOUT."""
        for host, port in self._endpoints:
            try:
                _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), PROBE_TIMEOUT)
            except (OSError, TimeoutError):
                return False
            writer.close()
        return True

    def lost(self, why: str) -> None:
        if self.up:
            log.error("the Ray runtime (%s) is gone: %s", self.status.where, why)
            self.status = RuntimeStatus("down", self.status.where, time.time(), error=why)

    async def reconnect(self) -> None:
        """One attempt: drop what is left of the old runtime, start or join a new one.
        Raises RayUnavailable (one line). Ray's calls run off the event loop."""
        try:
            await asyncio.wait_for(asyncio.to_thread(ray.shutdown), CONNECT_TIMEOUT)
        except TimeoutError:
            raise RayUnavailable("the old Ray runtime did not shut down in time") from None
        try:
            await asyncio.wait_for(
                connect_ray(self.address, cpu_workers=self.cpu_workers), CONNECT_TIMEOUT * 2
            )
        except (RayUnavailable, TimeoutError) as exc:
            self.status.tries += 1
            self.status.error = str(exc) or "no answer in time"
            raise RayUnavailable(self.status.error) from None
        self._endpoints = await asyncio.to_thread(_endpoints)
        down_for = time.time() - self.status.since
        self.status = RuntimeStatus("up", self.status.where, time.time())
        log.warning("the Ray runtime (%s) is back after %.0f s", self.status.where, down_for)

    def backoff(self) -> float:
        """Seconds before the next reconnect: 1, 2, 4 … up to retry_cap."""
        return min(self.retry_cap, 2.0 ** max(0, self.status.tries - 1))

    async def stop(self) -> None:
        if self.owned:
            self.owned = False
            await asyncio.to_thread(ray.shutdown)


def _endpoints() -> list[tuple[str, int]]:
    """The GCS and this node's raylet: the two processes whose death ends every worker."""
    gcs_host, _, gcs_port = ray.get_runtime_context().gcs_address.rpartition(":")
    found = [(gcs_host.strip("[]"), int(gcs_port))]
    node_id = ray.get_runtime_context().get_node_id()
    for node in ray.nodes():
        if node.get("NodeID") == node_id and node.get("Alive"):
            found.append((node["NodeManagerAddress"], int(node["NodeManagerPort"])))
    return found
