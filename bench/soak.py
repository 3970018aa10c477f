"""Soak: N jobs through the real bot while everything around it fails, then an audit.

The bot runs as operators run it (``python -m bench.soak_bot``: ``python -m bot`` plus two
fault switches, see there) in its own process, with its own local Ray and camera workers,
against the loopback Discord of the test suite in this process. Members send /animate at a
steady pace; between jobs, faults are injected at random, every kind at least twice:

- ``worker_kill``: SIGKILL a Ray worker process (a render dies mid-frame);
- ``raylet_kill``: SIGKILL the raylet (the OOM killer's favourite; every worker dies);
- ``bot_kill``: SIGKILL the bot and all its processes, then start it again (a power cut);
- ``discord_429`` / ``discord_5xx``: rate limits and server errors on message edits;
- ``discord_10008``: a moderator deletes a job's message before its clip is posted;
- ``discord_40005``: the upload limit shrinks under a job (the clip must be re-encoded);
- ``db_read_only`` / ``disk_full``: for a few seconds, SQLite refuses writes / no file grows.

Then, from the database, the output folder and everything the loopback Discord saw:

- every job ended: delivered (exactly one message ever carried its MP4, one debit, no
  refund) or refunded (one debit, one refund, no MP4 anywhere); nothing left non-terminal;
- every member's /balance equals the sum of their ledger, which equals their welcome credits
  minus the cost of their delivered jobs;
- no orphan or half-written MP4 in OUTPUT_DIR;
- the gateway acknowledgement latency of every /animate (p99) and the bot's event-loop lag
  (p99 from /queue).

    python -m bench soak [--jobs 300]
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from bench import Figure

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
FAULTS = (
    "worker_kill",
    "raylet_kill",
    "bot_kill",
    "discord_429",
    "discord_5xx",
    "discord_10008",
    "discord_40005",
    "db_read_only",
    "disk_full",
)
JOBS = 300
MEMBERS = 6
WELCOME = 100_000
ACTIVE = 4
"""Jobs queued or rendering at once: enough that faults land on jobs in every stage."""
FAULT_SECONDS = 3.0
START_TIMEOUT = 120.0
DRAIN_TIMEOUT = 180.0


@dataclass
class Audit:
    jobs: int = 0
    delivered: int = 0
    refunded: int = 0
    refused: int = 0
    """/animate answered with a refusal (e.g. while the database was read-only): no job."""
    lost: list[int] = field(default_factory=list)
    """Ended neither delivered nor refunded, or delivered without a clip message."""
    double_charged: list[int] = field(default_factory=list)
    double_delivered: list[int] = field(default_factory=list)
    double_refunded: list[int] = field(default_factory=list)
    non_terminal: list[int] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    balance_mismatch: list[str] = field(default_factory=list)
    faults: dict[str, int] = field(default_factory=dict)
    ack_p99_s: float = 0.0
    loop_lag_p99_s: float = 0.0
    loop_stalls: int = 0
    seconds: float = 0.0

    @property
    def clean(self) -> bool:
        return not (
            self.lost or self.double_charged or self.double_delivered or self.double_refunded
            or self.non_terminal or self.orphans or self.balance_mismatch
        )


class BotProcess:
    """The bot in its own session (so a kill takes its Ray with it), log collected."""

    def __init__(self, env: dict[str, str], workdir: Path) -> None:
        self.env = env
        self.workdir = workdir
        self.lines: list[str] = []
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.soak_bot"], env=self.env, cwd=self.workdir,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            start_new_session=True,
        )
        self.starts += 1
        threading.Thread(target=self._read, args=(self.process,), daemon=True).start()

    def _read(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stderr is not None
        with open(self.workdir / "bot.log", "ab") as out:
            for raw in process.stderr:
                out.write(raw)
                out.flush()
                self.lines.append(raw.decode(errors="replace").rstrip())

    def tree(self) -> list[psutil.Process]:
        assert self.process is not None
        try:
            root = psutil.Process(self.process.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def find(self, test: Any) -> list[psutil.Process]:
        found = []
        for p in self.tree()[1:]:
            try:
                if test(p.name(), " ".join(p.cmdline())):
                    found.append(p)
            except psutil.Error:
                pass
        return found

    def kill(self) -> None:
        """SIGKILL the bot and every process it started, as a power cut would."""
        processes = self.tree()
        for p in processes:
            try:
                p.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(processes, timeout=30)
        assert self.process is not None
        self.process.wait()

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def stop(self) -> int:
        """Ctrl-C, as an operator stops it; killed if it does not stop within 60 s."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.kill()
        for p in self.tree():  # Ray processes that outlived it
            try:
                p.kill()
            except psutil.Error:
                pass
        return self.process.returncode

    def count(self, fragment: str) -> int:
        return sum(fragment in line for line in self.lines)


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def _read_db(path: Path, sql: str, *args: Any) -> list[sqlite3.Row]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def _plan(jobs: int, rng: random.Random) -> dict[int, list[str]]:
    """Which faults follow which submission: every kind at least twice, about one fault per
    ten jobs beyond that, spread evenly after a few fault-free jobs."""
    kinds = [k for k in FAULTS for _ in range(2)]
    kinds += [rng.choice(FAULTS) for _ in range(max(0, jobs // 10 - len(kinds)))]
    rng.shuffle(kinds)
    warmup = min(3, jobs // 4)
    spacing = (jobs - warmup) / (len(kinds) + 1)
    plan: dict[int, list[str]] = {}
    for i, kind in enumerate(kinds):
        plan.setdefault(min(jobs - 1, warmup + round(spacing * (i + 1)) - 1), []).append(kind)
    return plan


class Soak:
    def __init__(self, d: Any, tmp: Path, jobs: int, seed: int, say: Any) -> None:
        self.d = d
        self.tmp = tmp
        self.jobs = jobs
        self.rng = random.Random(seed)
        self.say = say
        self.database = tmp / "bot.sqlite3"
        self.outputs = tmp / "outputs"
        self.audit = Audit()
        self.faults: Counter[str] = Counter()
        self.acks: list[float] = []
        self.runs: list[Any] = []
        self.refusals: list[str] = []
        self.clip_size = 0
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "RAY_"))},
            **d.env(),
            "PYTHONPATH": str(ROOT),
            "DATABASE_PATH": str(self.database),
            "OUTPUT_DIR": str(self.outputs),
            "MODEL": "camera",
            "CPU_WORKERS": "2",
            "GUILD_IDS": str(d.guild.id),
            "MAX_QUEUE": "1000",
            "MAX_QUEUED_PER_USER": "50",
            "WELCOME_CREDITS": str(WELCOME),
            "LOG_LEVEL": "INFO",
            "SOAK_FAULT_SECONDS": str(FAULT_SECONDS),
        }
        self.bot = BotProcess(env, tmp)

    # ---- driving -------------------------------------------------------------------------

    def active(self) -> int:
        rows = _read_db(
            self.database, "SELECT COUNT(*) FROM jobs WHERE status IN ('queued', 'running', 'done')"
        )
        return rows[0][0]

    async def wait_active_below(self, limit: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while await asyncio.to_thread(self.active) >= limit:
            if time.monotonic() > deadline:
                self.bot.signal(signal.SIGQUIT)  # its threads and tasks, into the log
                await asyncio.sleep(2.0)
                stuck = _read_db(
                    self.database,
                    "SELECT id, status, attempts, error FROM jobs WHERE status IN ('queued', 'running', 'done')",
                )
                raise AssertionError(
                    f"jobs did not drain below {limit} within {timeout:g} s: {[tuple(r) for r in stuck]}"
                )
            await asyncio.sleep(0.2)

    async def wait_connected(self) -> None:
        await self.d.wait_for(
            lambda: self.d.gateway.live_sessions(), START_TIMEOUT, what="the bot's gateway session"
        )

    async def submit(self, k: int, member: Any, photo: Any) -> None:
        options = {"image": photo, "prompt": f"soak job {k}, a slow push-in", "duration": 2.0}
        run = await self.d.slash("animate", options, user=member)
        callback = await run.acknowledged(timeout=30)
        self.acks.append(callback.latency)
        self.runs.append(run)
        # Accepted ("Queued as job …", the job is in the database) or refused, in words.
        answer = await run.message(lambda m: m.ephemeral and bool(m.content), timeout=60)
        if "Queued as job" not in answer.content:
            self.refusals.append(answer.content)

    async def inject(self, kind: str) -> None:
        self.faults[kind] += 1
        self.say(f"fault {kind}")
        d, bot = self.d, self.bot
        if kind == "worker_kill":
            await asyncio.sleep(self.rng.uniform(0.3, 1.5))
            workers = bot.find(lambda name, cmd: "PipelineWorker" in name or "PipelineWorker" in cmd)
            if workers:
                self.rng.choice(workers).kill()
        elif kind == "raylet_kill":
            await asyncio.sleep(self.rng.uniform(0.3, 1.5))
            back = bot.count("is back after")
            raylets = bot.find(lambda name, cmd: name.startswith("raylet"))
            assert raylets, f"no raylet under the bot: {bot.tree()}"
            for p in raylets:
                p.kill()
            await self._until(lambda: bot.count("is back after") > back, "Ray to come back")
        elif kind == "bot_kill":
            await asyncio.sleep(self.rng.uniform(0.3, 1.5))
            bot.kill()
            await d.wait_for(lambda: not d.gateway.live_sessions(), 30, what="the session to drop")
            bot.start()
            await self.wait_connected()
        elif kind == "discord_429":
            d.faults.rate_limit("PATCH /webhooks/*", count=3, retry_after=0.5)
        elif kind == "discord_5xx":
            d.faults.server_error("PATCH /webhooks/*", status=self.rng.choice((500, 502, 503)), count=1)
        elif kind == "discord_10008":
            run = self.runs[-1]
            message = await run.message(lambda m: not m.ephemeral and m.card, timeout=30)
            if not any(a.filename.endswith(".mp4") for a in message.attachments):
                await d.delete_message(message)
        elif kind == "discord_40005":
            self.runs[-1].record.attachment_size_limit = int(self.clip_size * 0.7)
        elif kind == "db_read_only":
            bot.signal(signal.SIGUSR1)
            await asyncio.sleep(FAULT_SECONDS + 0.5)
        elif kind == "disk_full":
            bot.signal(signal.SIGUSR2)
            await asyncio.sleep(FAULT_SECONDS + 0.5)

    async def _until(self, predicate: Any, what: str, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"no {what} within {timeout:g} s:\n" + "\n".join(self.bot.lines[-30:]))
            await asyncio.sleep(0.2)

    async def run(self, photo_bytes: bytes) -> Audit:
        d = self.d
        started = time.monotonic()
        self.bot.start()
        await d.wait_for_commands("animate", guild=d.guild, timeout=START_TIMEOUT)
        await self.wait_connected()
        await self._until(lambda: self.bot.count("ready:") > 0, "worker ready")
        members = [d.add_member(f"soak{i}") for i in range(MEMBERS)]
        photo = d.upload(photo_bytes, "photo.png")
        plan = _plan(self.jobs, self.rng)
        for k in range(self.jobs):
            await self.wait_active_below(ACTIVE, DRAIN_TIMEOUT)
            await self.submit(k, members[k % MEMBERS], photo)
            if k == 0:  # the clip size the 40005 fault undercuts
                await self.wait_active_below(1, DRAIN_TIMEOUT)
                self.clip_size = self._largest_clip()
            for kind in plan.get(k, ()):
                await self.inject(kind)
            if k % 25 == 24:
                self.say(f"{k + 1}/{self.jobs} jobs sent, {dict(self.faults)}")
        await self.wait_active_below(1, DRAIN_TIMEOUT)
        await self._final_questions(members)
        self.bot.stop()
        self.audit.seconds = time.monotonic() - started
        await asyncio.to_thread(self._audit, members)
        return self.audit

    def _largest_clip(self) -> int:
        sizes = [
            a.size
            for m in self.d.messages(include_deleted=True)
            for a in m.attachments
            if a.filename.endswith(".mp4")
        ]
        assert sizes, "the first job delivered no clip"
        return max(sizes)

    async def _final_questions(self, members: list[Any]) -> None:
        """What members and operators see at the end: /balance each, /queue once."""
        d = self.d
        self.balances: dict[int, int] = {}
        for member in members:
            run = await d.slash("balance", {}, user=member)
            answer = await run.original(timeout=30)
            value = next(
                f["value"] for e in answer.embeds for f in e.get("fields", []) if f["name"] == "Balance"
            )
            self.balances[member.id] = int(re.sub(r"[^0-9]", "", value.split("credit")[0]))
        operator = d.add_member(d.app_owner)
        answer = await (await d.slash("queue", {}, user=operator)).original(timeout=30)
        footer = answer.embeds[0].get("footer", {}).get("text", "")
        match = re.search(r"p99 lag (\d+) ms, (\d+) stall", footer)
        if match:
            self.audit.loop_lag_p99_s = int(match.group(1)) / 1000
            self.audit.loop_stalls = int(match.group(2))

    # ---- the audit -----------------------------------------------------------------------

    def _audit(self, members: list[Any]) -> None:
        a = self.audit
        a.faults = dict(self.faults)
        a.ack_p99_s = _percentile(self.acks, 0.99)
        jobs = _read_db(self.database, "SELECT * FROM jobs ORDER BY id")
        ledger = _read_db(self.database, "SELECT * FROM ledger")
        a.jobs = len(jobs)
        a.refused = len(self.refusals)
        carried: Counter[int] = Counter()
        for message in self.d.messages(include_deleted=True):
            names = {att.filename for version in message.history for att in version.attachments}
            for name in names:
                if m := re.fullmatch(r"animate-(\d+)\.mp4", name):
                    carried[int(m.group(1))] += 1
        debits = Counter(r["job_id"] for r in ledger if r["kind"] == "debit")
        refunds = Counter(r["job_id"] for r in ledger if r["kind"] == "refund")
        kept = set()
        for job in jobs:
            jid, status = job["id"], job["status"]
            if debits[jid] > 1:
                a.double_charged.append(jid)
            if refunds[jid] > 1:
                a.double_refunded.append(jid)
            if carried[jid] > 1:
                a.double_delivered.append(jid)
            if status == "delivered":
                a.delivered += 1
                kept.add(Path(job["result_path"]).name if job["result_path"] else "")
                if carried[jid] != 1 or debits[jid] != 1 or refunds[jid]:
                    a.lost.append(jid)
            elif status in ("failed", "cancelled"):
                a.refunded += 1
                if debits[jid] != 1 or refunds[jid] != 1 or carried[jid]:
                    a.lost.append(jid)
            else:
                a.non_terminal.append(jid)
        files = {p.name for p in self.outputs.iterdir()} if self.outputs.exists() else set()
        a.orphans = sorted(files - kept)
        cost = {j["id"]: j["cost"] for j in jobs}
        for member in members:
            rows = [r for r in ledger if r["user_id"] == member.id]
            total = sum(r["delta"] for r in rows)
            delivered_cost = sum(
                cost[j["id"]] for j in jobs if j["user_id"] == member.id and j["status"] == "delivered"
            )
            told = self.balances.get(member.id)
            if not (told == total == WELCOME - delivered_cost):
                a.balance_mismatch.append(
                    f"{member.id}: /balance {told}, ledger {total}, expected {WELCOME - delivered_cost}"
                )


async def soak(jobs: int = JOBS, *, seed: int = 1, say: Any = None) -> Audit:
    """Run the soak in a temporary folder; returns the audit (see :class:`Audit`)."""
    sys.path.insert(0, str(TESTS))
    from loopback import LoopbackDiscord  # noqa: PLC0415 - the loopback lives with the tests
    from photos import photo_path  # noqa: PLC0415

    say = say or (lambda text: print(text, file=sys.stderr, flush=True))
    with tempfile.TemporaryDirectory(prefix="soak") as folder:
        async with LoopbackDiscord() as d:
            runner = Soak(d, Path(folder), jobs, seed, say)
            try:
                return await runner.run(photo_path("coffee").read_bytes())
            except BaseException:
                runner.bot.stop()
                kept = Path(tempfile.gettempdir()) / "soak-failed-bot.log"
                kept.write_text("\n".join(runner.bot.lines) + "\n")
                say(f"the soak failed; the bot's log is in {kept}")
                raise


def run(jobs: int = JOBS) -> list[Figure]:
    audit = asyncio.run(soak(jobs))
    detail = ", ".join(f"{k} {v}" for k, v in sorted(audit.faults.items()))
    return [
        Figure("jobs", audit.jobs, "jobs", detail=f"{audit.delivered} delivered, {audit.refunded} refunded, {audit.refused} refused at /animate"),
        Figure("faults injected", sum(audit.faults.values()), "faults", detail=detail),
        Figure("lost (neither delivered nor refunded)", len(audit.lost) + len(audit.non_terminal), "jobs", target=0, detail=str(audit.lost + audit.non_terminal)),
        Figure("double-charged or double-refunded", len(audit.double_charged) + len(audit.double_refunded), "jobs", target=0),
        Figure("double-delivered", len(audit.double_delivered), "jobs", target=0),
        Figure("orphan MP4 files", len(audit.orphans), "files", target=0, detail=", ".join(audit.orphans[:5])),
        Figure("balance ≠ Σ ledger ≠ welcome − delivered", len(audit.balance_mismatch), "members", target=0, detail="; ".join(audit.balance_mismatch[:3])),
        Figure("/animate acknowledgement p99", audit.ack_p99_s * 1000, "ms", target=1000),
        Figure("event-loop lag p99 (since the last restart)", audit.loop_lag_p99_s * 1000, "ms", target=250, detail=f"{audit.loop_stalls} stalls over 250 ms"),
        Figure("wall time", audit.seconds, "s"),
    ]

