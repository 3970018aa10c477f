"""The cluster path: the bot joins Ray at RAY_ADDRESS and follows GPU machines joining.

A real multi-node Ray cluster on this machine (``ray.cluster_utils.Cluster``: separate GCS and
raylet processes per node). The head has no GPU, as in the README recipe; a node declaring
two GPUs joins later. GPUs are declared resources here (this machine has none): Ray places
the workers on them and sets their GPU ids exactly as on real hardware. The cluster lives in a
private RAY_TMPDIR, so its address file and sessions never meet another Ray on the machine.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
import ray
from dispatch_support import Recorder, make_dispatcher, settings_for, submit

from contract import AnimateResult, Progress
from jobs import CreditPolicy, Store

pytestmark = pytest.mark.asyncio


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> Any:
    from ray.cluster_utils import Cluster

    assert not ray.is_initialized(), "another test module left Ray running in this process"
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths live in it
    monkeypatch.setenv("RAY_TMPDIR", temp)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    # RAY_AUTH_MODE stays as it is: a local Ray started earlier in this process switched the
    # process (and its cached config) to token auth, and the cluster's nodes, started from
    # here, must agree with this driver.
    head = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 2, "gcs_server_port": free_port(), "include_dashboard": False},
    )
    try:
        yield head
    finally:
        ray.shutdown()
        head.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


async def test_joins_the_cluster_and_adds_a_worker_per_gpu_that_joins(
    cluster: Any, tmp_path: Path
) -> None:
    settings = settings_for(tmp_path, ray_address=cluster.address, cpu_workers=1)
    log_dir = tmp_path / "renders"
    log_dir.mkdir()
    async with await Store.open(settings.database_path, CreditPolicy(welcome=20)) as store:
        d = make_dispatcher(settings.jobs_config(), store, log_dir, tick=0.2, scale_interval=0.3)
        await d.start()
        try:
            rec = Recorder()
            d.subscribe(rec)
            await until(lambda: len(d.workers) == 1)
            # No GPU in the cluster yet: one CPU worker serves.
            assert [w.device for w in d.workers] == ["cpu"]
            head_node = d.workers[0].node_id
            cluster.add_node(num_cpus=2, num_gpus=2)  # a GPU machine joins
            await until(lambda: sorted(w.device for w in d.workers) == ["cuda", "cuda"], 60)
            gpu_nodes = {w.node_id for w in d.workers}
            assert len(gpu_nodes) == 1 and head_node not in gpu_nodes
            assert all(w.name.startswith("gpu-") for w in d.workers)
            await until(lambda: all(w.gpu for w in d.pool.workers))  # the CPU worker retired
            jobs = [await submit(d, user, "step=0.3 steps=3") for user in (1, 2)]
            await rec.finished(*(j.id for j in jobs))
            assert all(isinstance(rec.final(j.id)[0], AnimateResult) for j in jobs)
            ran_on = {(await store.get_job(j.id)).worker for j in jobs}
            assert ran_on == {w.name for w in d.workers}  # one job on each GPU
        finally:
            await d.stop()
    assert not ray.is_initialized()  # the dispatcher joined, so it disconnects again


async def until(predicate: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_head_lost_jobs_wait_then_are_refunded_and_the_bot_rejoins(
    cluster: Any, tmp_path: Path
) -> None:
    """RAY_ADDRESS and the head goes away: the dispatcher keeps the queue, tells waiting
    members why nothing moves, refunds a job only after JOB_TIMEOUT_SECONDS without a worker,
    and joins the cluster again (same address) when the head is back."""
    from ray.cluster_utils import Cluster

    address = cluster.address
    port = int(address.rpartition(":")[2])
    settings = settings_for(tmp_path, ray_address=address, cpu_workers=1, job_timeout_seconds=6)
    log_dir = tmp_path / "renders"
    log_dir.mkdir()
    async with await Store.open(settings.database_path, CreditPolicy(welcome=20)) as store:
        d = make_dispatcher(settings.jobs_config(), store, log_dir, tick=0.2, watch_interval=0.5)
        await d.start()
        d.runtime.retry_cap = 2.0
        rec = Recorder()
        d.subscribe(rec)
        try:
            await until(lambda: len(d.workers) == 1)
            # The head machine goes away (its GCS and raylet, which this driver uses).
            cluster.head_node.kill_all_processes(check_alive=False, allow_graceful=False)
            cluster.head_node = None
            await until(lambda: not d.runtime.up, 15)
            assert not d.workers

            waiting = await submit(d, 1)
            queued_at = time.monotonic()
            await rec.finished(waiting.id, timeout=20)
            waited = time.monotonic() - queued_at
            (final,) = rec.final(waiting.id)
            assert "No GPU worker was available for 6 seconds" in final.reason, final
            assert "refunded" in final.reason and waited >= 5.5, (final, waited)
            notes = [e.message for e in rec.of(waiting.id) if isinstance(e, Progress)]
            assert "#1 in the queue · waiting for a GPU worker" in notes, notes
            assert await store.balance(1) == 20  # charged, then refunded
            assert "DOWN" in d.describe_runtime()

            # The head comes back at the same address: the bot rejoins and renders again.
            head = Cluster(
                initialize_head=True,
                head_node_args={"num_cpus": 2, "gcs_server_port": port, "include_dashboard": False},
            )
            try:
                await until(lambda: len(d.workers) == 1, 90)
                assert d.runtime.up and "up" in d.describe_runtime()
                job = await submit(d, 2)
                await rec.finished(job.id, timeout=60)
                assert isinstance(rec.final(job.id)[0], AnimateResult)
            finally:
                await d.stop()
                head.shutdown()
        finally:
            await d.stop()
