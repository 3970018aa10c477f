"""`python -m bot` itself, as an operator runs it, against the loopback Discord.

A real subprocess with its settings in the environment and no RAY_ADDRESS, so it starts its
own local Ray and a camera worker. It must log in, sync its commands to GUILD_IDS, answer a
command, and stop cleanly on Ctrl-C; a second start with the same commands must not sync
again (the bot keeps a hash in SQLite); a bad token must end in one line and exit code 2.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from loopback import LoopbackDiscord

pytestmark = pytest.mark.asyncio

START_TIMEOUT = 90.0
STOP_TIMEOUT = 30.0


class BotProcess:
    """`python -m bot` with its stderr (where it logs) collected line by line."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []
        self._changed = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process.stderr is not None
        async for raw in self.process.stderr:
            self.lines.append(raw.decode(errors="replace").rstrip())
            self._changed.set()
        self._changed.set()

    @property
    def log(self) -> str:
        return "\n".join(self.lines)

    async def wait_for_line(self, fragment: str, timeout: float = START_TIMEOUT) -> str:
        deadline = time.monotonic() + timeout
        while True:
            for line in self.lines:
                if fragment in line:
                    return line
            if self._reader.done():
                raise AssertionError(f"the bot exited before logging {fragment!r}:\n{self.log}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {fragment!r} within {timeout:g} s:\n{self.log}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    async def stop(self) -> int:
        """Ctrl-C, as an operator stops it; killed if it does not stop in time."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(self.process.wait(), STOP_TIMEOUT)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
            raise AssertionError(
                f"the bot did not stop within {STOP_TIMEOUT:g} s:\n{self.log}"
            ) from None
        await self._reader
        return self.process.returncode  # type: ignore[return-value]


def bot_env(discord_: LoopbackDiscord, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "DISCORD_"))}
    env.update(discord_.env())
    env.update(
        DATABASE_PATH=str(tmp_path / "bot.sqlite3"),
        OUTPUT_DIR=str(tmp_path / "outputs"),
        MODEL="camera",
        GUILD_IDS=str(discord_.guild.id),
        RAY_ADDRESS="",
        CPU_WORKERS="1",
        LOG_LEVEL="INFO",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


@contextlib.asynccontextmanager
async def python_m_bot(env: dict[str, str], cwd: Path) -> AsyncIterator[BotProcess]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", env=env, cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE, start_new_session=True,
    )
    bot = BotProcess(process)
    try:
        yield bot
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # it and anything it started (Ray)
            await process.wait()


def environ(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
    except OSError:  # gone meanwhile
        return ""


def started_by(root: int) -> list[int]:
    """Every living process in `root`'s session except `root` itself (python_m_bot starts
    the bot in a new session, so that is everything it started: Ray and its workers)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != root:
            try:
                if os.getsid(int(entry.name)) == root:
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


async def answers_balance(discord_: LoopbackDiscord) -> str:
    await discord_.wait_until_connected(START_TIMEOUT)
    run = await discord_.slash("balance")
    answer = await run.original(timeout=15)
    assert answer.ephemeral
    return answer.text()


async def test_python_m_bot_starts_syncs_once_and_answers(tmp_path: Path) -> None:
    async with LoopbackDiscord() as discord_:
        env = bot_env(discord_, tmp_path)
        async with python_m_bot(env, tmp_path) as bot:
            await bot.wait_for_line("synced 8 commands to guilds")
            names = {c["name"] for c in discord_.commands(discord_.guild)}
            assert names == {"Animate", "animate", "balance", "credits", "history", "mod", "queue", "stats"}
            assert "Balance" in await answers_balance(discord_)
            # One line each says what serves the jobs: the model and the device.
            ready = await bot.wait_for_line("ready:")
            assert "serving camera" in ready and " on " in ready
            await bot.wait_for_line("logged in as animate-bot")
            assert discord_.token not in bot.log
            # Ray's cluster token (whoever reads it can run code there) is the owner's alone.
            token_file = Path.home() / ".ray" / "auth_token"
            assert not token_file.exists() or token_file.stat().st_mode & 0o077 == 0
            # The Ray processes it started (workers included) do not carry the token.
            carriers = [pid for pid in started_by(bot.process.pid) if discord_.token in environ(pid)]
            assert started_by(bot.process.pid) and carriers == [], carriers
            # A second bot on the same database refuses to start, naming the first one.
            async with python_m_bot(env, tmp_path) as second:
                code = await asyncio.wait_for(second.process.wait(), START_TIMEOUT)
                await second._reader
            assert code == 2, second.log
            assert second.lines[-1].startswith("animate-bot: Another animate-bot (pid "), second.log
            assert f"pid {bot.process.pid} on " in second.lines[-1] and "Traceback" not in second.log
            assert await bot.stop() == 0, bot.log
        syncs = len(discord_.state.command_syncs)
        assert syncs == 1

        # Same commands, same database: no sync this time. The secrets now come from files
        # (Docker secrets): the workers get the Hugging Face token's path, never a token.
        secrets = tmp_path / "secrets"
        secrets.mkdir()
        (secrets / "discord").write_text(discord_.token + "\n")
        (secrets / "hf").write_text("hf_secret_for_gated_weights\n")
        env_files = {k: v for k, v in env.items() if k != "DISCORD_TOKEN"}
        env_files.update(DISCORD_TOKEN_FILE=str(secrets / "discord"), HF_TOKEN_FILE=str(secrets / "hf"))
        async with python_m_bot(env_files, tmp_path) as bot:
            await bot.wait_for_line("commands unchanged since the last sync; not syncing")
            assert "Balance" in await answers_balance(discord_)
            assert len(discord_.state.command_syncs) == syncs
            await bot.wait_for_line("ready:")
            started = started_by(bot.process.pid)
            environs = [environ(pid) for pid in started]
            assert not any(discord_.token in e or "hf_secret" in e for e in environs)
            assert any(f"HF_TOKEN_PATH={secrets / 'hf'}" in e for e in environs)
            assert await bot.stop() == 0, bot.log


async def test_an_unreachable_api_base_is_one_line_and_exit_code_2(tmp_path: Path) -> None:
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    async with LoopbackDiscord() as discord_:
        base = f"http://127.0.0.1:{port}/api/v10"
        env = bot_env(discord_, tmp_path, DISCORD_API_BASE=base)
        async with python_m_bot(env, tmp_path) as bot:
            code = await asyncio.wait_for(bot.process.wait(), START_TIMEOUT)
            await bot._reader
        assert code == 2, bot.log
        assert bot.lines[-1].startswith(f"animate-bot: Cannot reach {base}"), bot.log
        assert "DISCORD_API_BASE" in bot.lines[-1] and "Traceback" not in bot.log


async def test_a_bad_token_is_one_line_and_exit_code_2(tmp_path: Path) -> None:
    async with LoopbackDiscord() as discord_:
        env = bot_env(discord_, tmp_path, DISCORD_TOKEN="not-a-real-token")
        started = time.monotonic()
        async with python_m_bot(env, tmp_path) as bot:
            code = await asyncio.wait_for(bot.process.wait(), START_TIMEOUT)
            await bot._reader
        assert code == 2, bot.log
        assert bot.lines[-1].startswith("animate-bot: Discord rejected DISCORD_TOKEN"), bot.log
        assert "Traceback" not in bot.log and "not-a-real-token" not in bot.log
        assert len([line for line in bot.lines if line.startswith("animate-bot:")]) == 1
        # Refused before Ray and the workers were started: fast, nothing to clean up.
        assert "starting CPU worker" not in bot.log
        assert time.monotonic() - started < 30
