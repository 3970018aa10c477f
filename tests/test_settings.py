"""Settings: defaults, parsing, and start-up failing with one clear line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.settings import TOKEN_HELP, Settings, SettingsError
from contract import LoraSpec

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.upper() in {f.upper() for f in Settings.model_fields}:
            monkeypatch.delenv(name)
    return monkeypatch


def test_defaults(clean_env: pytest.MonkeyPatch) -> None:
    settings = Settings.load(env_file=None)
    assert settings.models == ["auto"]
    assert settings.database_path == Path("data/animate-bot.sqlite3")
    assert settings.guild_ids == [] and settings.ray_address is None
    assert settings.cost("ltx", 5) == 5 and settings.cost("camera", 2) == 1
    assert settings.cost("some/local-model", 3) == 6  # default rate for unknown models


def test_parsing_from_env_file(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text(
        "DISCORD_TOKEN=abc.def\nADMIN_USER_IDS=1, 2;3\nGUILD_IDS=10\nMODEL=ltx,camera\n"
        'MODEL_COSTS={"ltx": 0.5}\nBLOCKED_WORDS=Gore, weapon \nLOG_LEVEL=debug\nALLOW_DMS=false\n'
        'LORAS={"wan-14b": ["someone/loras:film.safetensors@0.8", "./loras/a.safetensors"]}\n'
        "ALLOWED_ROLE_IDS=5,6\nMAX_JOBS_PER_DAY=12\nOFFLOAD=group\nWEIGHTS=Q4_K_M\n"
    )
    settings = Settings.load(env_file=env)
    assert settings.token() == "abc.def"
    assert settings.admin_user_ids == [1, 2, 3] and settings.guild_ids == [10]
    assert settings.models == ["ltx", "camera"]
    assert settings.model_costs["ltx"] == 0.5 and settings.model_costs["wan"] == 2.0
    assert settings.blocked_words == ["gore", "weapon"]
    assert settings.log_level == "DEBUG" and settings.allow_dms is False
    assert "abc.def" not in repr(settings)
    config = settings.jobs_config()
    assert config.backend.loras_for("wan-14b") == (
        LoraSpec("someone/loras", "film.safetensors", strength=0.8),
        LoraSpec("./loras/a.safetensors"),
    )
    assert config.backend.loras_for("ltx") == ()
    assert settings.allowed_role_ids == [5, 6] and config.max_jobs_per_day == 12
    assert (config.backend.offload, config.backend.weights) == ("group", "Q4_K_M")


def test_effects_are_read_per_model(clean_env: pytest.MonkeyPatch) -> None:
    from contract import Effect

    clean_env.setenv(
        "EFFECTS",
        '{"wan-14b-fast": {"orbit": {"label": "360° orbit", "prompt": " orbit shot ", "loras": '
        '["someone/orbit:high.safetensors", "someone/orbit:low.safetensors@0.7#transformer_2"]}}}',
    )
    config = Settings.load(env_file=None, discord_token="x").jobs_config()
    assert config.backend.effects_for("wan-14b-fast") == (
        Effect(
            "orbit", "360° orbit",
            (
                LoraSpec("someone/orbit", "high.safetensors"),
                LoraSpec("someone/orbit", "low.safetensors", strength=0.7, component="transformer_2"),
            ),
            prompt="orbit shot",
        ),
    )
    assert config.backend.effects_for("ltx") == ()


def test_environment_overrides_env_file(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("WELCOME_CREDITS=5\n")
    clean_env.setenv("WELCOME_CREDITS", "7")
    assert Settings.load(env_file=env).welcome_credits == 7


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("WELCOME_CREDITS", "lots", "Invalid setting WELCOME_CREDITS ('lots'"),
        ("MAX_QUEUED_PER_USER", "0", "MAX_QUEUED_PER_USER"),
        ("ADMIN_USER_IDS", "alice", "comma-separated Discord user ids"),
        ("MODEL_COSTS", "{not json", "JSON object"),
        ("DISCORD_GATEWAY_URL", "http://x", "ws(s) URL"),
        ("OFFLOAD", "sometimes", "auto, none, model or group"),
        ("WEIGHTS", "int4", "auto, bf16, fp8, Q8_0, Q5_K_M or Q4_K_M"),
        ("REFILL_PERIOD_HOURS", "-1", "hours between free refills"),
        ("LORAS", '{"wan-14b": ["a/b@9"]}', "LoRA strength 9 is outside -4 to 4"),
        ("LORAS", '{"camera": ["./x.safetensors"]}', "the camera move has no AI model"),
        ("EFFECTS", '{"wan-14b": {"Orbit!": {"label": "o", "loras": ["a/b:c.safetensors"]}}}',
         "an effect's name is 1-32 lower-case letters"),
        ("EFFECTS", '{"wan-14b": {"orbit": {"label": "o"}}}', "needs {\"label\": ..., \"loras\": [...]}"),
        ("MAX_JOBS_PER_DAY", "-1", "videos one member may start in any 24 hours"),
        ("ALLOWED_ROLE_IDS", "moderators", "Invalid setting ALLOWED_ROLE_IDS"),
    ],
)
def test_invalid_value_names_variable(
    clean_env: pytest.MonkeyPatch, name: str, value: str, expected: str
) -> None:
    clean_env.setenv(name, value)
    with pytest.raises(SettingsError) as info:
        Settings.load(env_file=None)
    message = str(info.value)
    assert name in message and "\n" not in message
    assert expected.replace("('", "(got '") in message


def test_missing_token_is_explained(clean_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(SettingsError, match="DISCORD_TOKEN is not set"):
        Settings.load(env_file=None).token()


def _run_bot(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k.upper() not in {f.upper() for f in Settings.model_fields}}
    return subprocess.run(
        [sys.executable, "-m", "bot"],
        cwd=tmp_path,  # no .env here
        env={**base, "PYTHONPATH": str(REPO), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_start_without_token_prints_one_sentence(tmp_path: Path) -> None:
    result = _run_bot(tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip() == f"animate-bot: {TOKEN_HELP}"
    assert "Traceback" not in result.stderr


def test_start_with_bad_setting_names_it_and_hides_token(tmp_path: Path) -> None:
    result = _run_bot(tmp_path, DISCORD_TOKEN="secret-token-value", MAX_ATTEMPTS="eleven")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "MAX_ATTEMPTS" in lines[0]
    assert "secret-token-value" not in result.stderr + result.stdout


def test_env_example_documents_every_setting_with_its_default(clean_env: pytest.MonkeyPatch) -> None:
    example = (REPO / ".env.example").read_text()
    documented = {
        line.split("=", 1)[0]: line.split("=", 1)[1]
        for line in example.splitlines()
        if line and not line.startswith("#")
    }
    assert set(documented) == {name.upper() for name in Settings.model_fields}
    defaults = Settings.load(env_file=None)
    from_example = Settings.load(env_file=REPO / ".env.example")
    assert from_example.model_dump(exclude={"discord_token"}) == defaults.model_dump(
        exclude={"discord_token"}
    )


def test_log_filter_redacts_the_token(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from bot.__main__ import RedactSecrets

    logger = logging.getLogger("test.redact")
    handler = logging.StreamHandler(stream := __import__("io").StringIO())
    handler.addFilter(RedactSecrets("tok.en.secret"))
    logger.addHandler(handler)
    try:
        logger.warning("connecting with %s now", "tok.en.secret")
    finally:
        logger.removeHandler(handler)
    assert "tok.en.secret" not in stream.getvalue()
    assert "[redacted]" in stream.getvalue()


def test_log_filter_redacts_interaction_tokens() -> None:
    """discord.py logs webhook URLs at DEBUG; an interaction token is a 15-minute credential."""
    import io
    import logging

    from bot.__main__ import RedactSecrets

    token = "aW50ZXJhY3Rpb246MTIzNDU2Nzg5MDpzZWNyZXQ.abc-DEF_123"
    logger = logging.getLogger("test.redact.interactions")
    handler = logging.StreamHandler(stream := io.StringIO())
    handler.addFilter(RedactSecrets("bot-token"))
    logger.addHandler(handler)
    try:
        logger.warning("PATCH https://discord.com/api/v10/webhooks/1234567890/%s/messages/5", token)
        logger.warning("POST /api/v10/interactions/987654321/%s/callback has returned 204", token)
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert token not in text
    assert "/webhooks/1234567890/[redacted]/messages/5" in text
    assert "/interactions/987654321/[redacted]/callback" in text


@pytest.mark.parametrize("token", ["abc.def ghi", "abc.def\x07ghi", "abc.\u200bdefghi"])
def test_a_token_with_a_space_or_control_character_is_one_clear_line(token: str) -> None:
    settings = Settings.load(env_file=None, discord_token=token)
    with pytest.raises(SettingsError) as info:
        settings.token()
    assert "invisible character" in str(info.value) and token not in str(info.value)


def test_the_token_can_come_from_a_file(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Docker secrets and systemd credentials hand the token over as a file (with a newline)."""
    secret = tmp_path / "discord_token"
    secret.write_text("from-a-file.token\n")
    assert Settings.load(env_file=None, discord_token_file=str(secret)).token() == "from-a-file.token"

    with pytest.raises(SettingsError, match="DISCORD_TOKEN or DISCORD_TOKEN_FILE, not both"):
        Settings.load(env_file=None, discord_token="x", discord_token_file=str(secret))
    missing = tmp_path / "nope"
    with pytest.raises(SettingsError) as refused:
        Settings.load(env_file=None, discord_token_file=str(missing))
    assert str(refused.value).startswith(f"Invalid setting DISCORD_TOKEN_FILE: {missing} cannot be read")
    with pytest.raises(SettingsError, match="Invalid setting HF_TOKEN_FILE"):
        Settings.load(env_file=None, hf_token_file=str(missing))


def test_a_token_file_that_does_not_exist_is_one_line_at_start(tmp_path: Path) -> None:
    result = _run_bot(tmp_path, DISCORD_TOKEN_FILE=str(tmp_path / "missing"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("animate-bot: Invalid setting DISCORD_TOKEN_FILE:") and "cannot be read" in line
