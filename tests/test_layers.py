"""The layers hold: the import contracts in pyproject.toml pass, they fail when a forbidden
import is added, and the bot and job processes load no model library at run time."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("bot", "jobs", "contract", "pipeline")
LINT = Path(sys.executable).with_name("lint-imports")


def lint(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT), "--config", str(root / "pyproject.toml"), "--no-cache"],
        cwd=root, env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=120,
    )


@pytest.fixture(scope="module")
def copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("layers")
    shutil.copy(REPO / "pyproject.toml", root)
    for package in PACKAGES:
        shutil.copytree(REPO / package, root / package, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def test_the_contracts_pass(copy: Path) -> None:
    result = lint(copy)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("jobs/status.py", "import discord", "jobs imports neither discord"),
        ("jobs/retry.py", "import pipeline.intake", "jobs imports neither discord"),
        ("contract/events.py", "import numpy", "contract is plain data"),
        ("pipeline/presets.py", "import jobs", "pipeline imports neither"),
        ("bot/embeds.py", "import pipeline.encode", "bot reaches the pipeline only"),
        ("bot/attachments.py", "import torch", "judging a photo loads no model library"),
        ("contract/models.py", "import bot.settings", "bot -> jobs -> contract"),
    ],
)
def test_a_forbidden_import_breaks_them(copy: Path, module: str, line: str, contract: str) -> None:
    path = copy / module
    original = path.read_text()
    path.write_text(original + f"\n{line}  # added by the test\n")
    try:
        result = lint(copy)
    finally:
        path.write_text(original)
    assert result.returncode != 0, result.stdout
    broken = result.stdout.split("Broken contracts", 1)[-1]
    assert contract in broken, result.stdout


def test_the_bot_and_job_layers_load_no_model_library() -> None:
    code = (
        "import sys, bot.app, bot.cogs.animate, bot.cogs.balance, bot.cogs.credits, "
        "bot.cogs.queue, bot.edit, jobs; "
        "heavy = [m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=120)
    code = (
        "import sys, jobs, contract; "
        "bad = [m for m in ('discord', 'torch', 'PIL', 'numpy', 'pipeline') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=120)
