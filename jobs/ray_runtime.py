"""Starting or joining Ray from the bot's process.

No RAY_ADDRESS: the bot starts a private local Ray instance (nothing for the operator to
install or run). RAY_ADDRESS set: the bot joins that cluster as a driver. Every failure is
one line for the operator (RayUnavailable), within about CONNECT_TIMEOUT seconds.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
from pathlib import Path

import ray

from contract import one_line

log = logging.getLogger("jobs.ray")

CONNECT_TIMEOUT = 30.0
"""Longest wait for Ray at RAY_ADDRESS before start-up gives up (the TCP probe is faster)."""
RETRY_CAP = 300.0
"""Longest pause between attempts to start workers that keep dying before they are ready."""
PROBE_TIMEOUT = 3.0


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
            raise RayUnavailable(f"Cannot start a local Ray instance: {one_line(exc, 200)}") from None
        protect_auth_token()
        return True
    # ray.init against something that is not a healthy Ray cluster retries for minutes, and
    # it must run on the main thread (a driver initialised elsewhere loses its actors), so
    # a throwaway process tries first, within a bounded time.
    await _probe_cluster(address, CONNECT_TIMEOUT)
    try:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=True)
    except Exception as exc:  # noqa: BLE001
        raise RayUnavailable(_unreachable(address, one_line(exc, 200))) from None
    return True


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


