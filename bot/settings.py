"""One typed settings object, read from the environment and `.env` once at start-up.

Every field's description says what it accepts: an invalid value stops start-up with one line
naming the variable and that description, and the token is never echoed.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from contract import CAMERA, BackendOptions, Effect, LoraSpec
from jobs import CreditPolicy, JobsConfig, Pricing

TOKEN_HELP = (
    "DISCORD_TOKEN is not set: create an application at https://discord.com/developers/applications, "
    "open its Bot page, press Reset Token, and put the token in a file named .env next to README.md "
    "as DISCORD_TOKEN=... (or export DISCORD_TOKEN, or point DISCORD_TOKEN_FILE at a file "
    "holding it)."
)

DEFAULT_MODEL_COSTS: dict[str, float] = {
    "camera": 0.2,
    "ltx": 1.0,
    "ltx-2b": 0.5,
    "ltx2": 2.0,
    "wan": 2.0,
    "svd": 2.0,
    "cogvideox": 3.0,
    "wan-14b": 4.0,
    "wan-14b-fast": 1.0,
}
"""Credits per second of video, per model; rounded up per clip, at least 1."""


class SettingsError(Exception):
    """A setting is missing or invalid; the message is one line, safe to print."""


IdList = Annotated[list[int], NoDecode]
WordList = Annotated[list[str], NoDecode]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        validate_default=True,
    )

    # Discord
    discord_token: SecretStr | None = Field(
        default=None, description="the bot token from the Discord developer portal"
    )
    discord_token_file: Path | None = Field(
        default=None,
        description="a readable file holding the bot token (Docker secrets, systemd "
        "credentials), instead of DISCORD_TOKEN",
    )
    hf_token_file: Path | None = Field(
        default=None,
        description="a readable file holding a Hugging Face token for gated weights; the "
        "workers get its path (HF_TOKEN_PATH), never its content",
    )
    guild_ids: IdList = Field(
        default_factory=list,
        description="comma-separated guild ids to sync commands to instantly (empty: global sync)",
    )
    discord_api_base: str | None = Field(
        default=None,
        description="an http(s) URL of Discord's REST API or a proxy, e.g. http://127.0.0.1:8080/api/v10",
    )
    discord_gateway_url: str | None = Field(
        default=None, description="a ws(s) URL of Discord's gateway or a proxy"
    )
    admin_user_ids: IdList = Field(
        default_factory=list,
        description="comma-separated Discord user ids of bot operators (besides the app owner)",
    )
    allowed_guild_ids: IdList = Field(
        default_factory=list, description="comma-separated guild ids the bot works in (empty: all)"
    )
    allowed_channel_ids: IdList = Field(
        default_factory=list, description="comma-separated channel ids the bot works in (empty: all)"
    )
    allowed_role_ids: IdList = Field(
        default_factory=list,
        description="comma-separated role ids; in a server only members with one may animate (empty: all)",
    )
    allow_dms: bool = Field(default=True, description="true or false: accept /animate in DMs")
    nsfw_channels_only: bool = Field(
        default=False, description="true or false: only accept /animate in age-restricted channels"
    )
    blocked_words: WordList = Field(
        default_factory=list,
        description="comma-separated words or phrases that block a prompt (case-insensitive)",
    )

    # Storage
    database_path: Path = Field(
        default=Path("data/animate-bot.sqlite3"), description="a file path for the SQLite database"
    )
    output_dir: Path = Field(default=Path("data/outputs"), description="a directory for finished MP4s")
    keep_outputs_days: float = Field(
        default=30.0, ge=0,
        description="days a delivered video stays in the bot's library before its MP4, photo "
        "and prompts are removed, a number ≥ 0 (0: forever)",
    )
    keep_favourites_days: float = Field(
        default=0.0, ge=0,
        description="the same for videos members marked as favourites, a number ≥ 0 (0: "
        "forever; never shorter than KEEP_OUTPUTS_DAYS)",
    )

    # Models and workers
    model: str = Field(
        default="auto",
        description=(
            "comma-separated enabled models, the first is the default: auto, camera, ltx, wan, "
            "ltx-2b, ltx2 (with sound), wan-14b, wan-14b-fast, svd, cogvideox, a local directory or a "
            "Hugging Face repo id"
        ),
    )
    model_costs: Annotated[dict[str, float], NoDecode] = Field(
        default_factory=lambda: dict(DEFAULT_MODEL_COSTS),
        description='a JSON object of credits per second per model, e.g. {"ltx": 1, "wan": 2}',
    )
    default_cost_per_second: float = Field(
        default=2.0, ge=0, description="credits per second for models not in MODEL_COSTS (≥ 0)"
    )
    smooth_cost_per_second: float = Field(
        default=0.5, ge=0,
        description="credits per second of video for Smooth (learned in-between frames), on top of the model's price",
    )
    upscale_cost_per_second: float = Field(
        default=1.0, ge=0,
        description="credits per second of video for Upscale 2× (Real-ESRGAN), on top of the model's price",
    )
    effects: Annotated[dict[str, dict[str, dict[str, Any]]], NoDecode] = Field(
        default_factory=dict,
        description=(
            'a JSON object of effects members may pick per model, e.g. {"wan-14b-fast": {"orbit": '
            '{"label": "360° orbit", "loras": ["someone/orbit:high.safetensors", '
            '"someone/orbit:low.safetensors#transformer_2"], "prompt": "orbit shot"}}}'
        ),
    )
    loras: Annotated[dict[str, list[str]], NoDecode] = Field(
        default_factory=dict,
        description=(
            'a JSON object of LoRAs fused into a model, e.g. {"wan-14b": '
            '["./loras/film.safetensors@0.8"]}; each REPO_OR_PATH[:WEIGHT_FILE][@STRENGTH]'
        ),
    )
    ray_address: str | None = Field(
        default=None, description=(
            "auto (this machine is a node of the Ray cluster, e.g. its head) or the head's "
            "host:port such as 10.0.0.5:6379 (empty: a local Ray inside the bot)"
        )
    )
    cpu_workers: int = Field(
        default=1, ge=1, le=64, description="how many CPU workers to run when there is no GPU (1–64)"
    )
    offload: Literal["auto", "none", "model", "group"] = Field(
        default="auto",
        description="auto, none, model or group: where the weights live (auto: the memory planner decides)",
    )
    weights: Literal["auto", "bf16", "fp8", "Q8_0", "Q5_K_M", "Q4_K_M"] = Field(
        default="auto",
        description="auto, bf16, fp8, Q8_0, Q5_K_M or Q4_K_M: how the denoiser's weights are "
        "stored (auto: the memory planner decides; Q8_0 to Q4_K_M: a GGUF file)",
    )
    compile: bool = Field(default=False, description="true or false: torch.compile the transformer")
    cache: bool = Field(default=False, description="true or false: diffusers first-block cache")
    half_frames: bool = Field(
        default=False,
        description="true or false: the LTX models render every other frame and RIFE draws the rest "
        "(needs `python -m pipeline download rife`; a GPU)",
    )
    attention_backend: str = Field(
        default="auto",
        pattern=r"^[A-Za-z0-9_]+$",
        description=(
            "auto (FlashAttention 3 or 2 when installed, else PyTorch SDPA), native, or a "
            "diffusers attention backend name such as _native_cudnn or sage"
        ),
    )

    # Credits and limits
    welcome_credits: int = Field(default=20, ge=0, description="a whole number ≥ 0")
    refill_amount: int = Field(
        default=0, ge=0, description="credits added per refill period, a whole number ≥ 0 (0: off)"
    )
    refill_period_hours: float = Field(
        default=24.0, gt=0, description="hours between free refills, a number > 0"
    )
    refill_cap: int = Field(
        default=20, ge=0, description="refills stop at this balance, a whole number ≥ 0"
    )
    max_queued_per_user: int = Field(
        default=3, ge=1, description="waiting or running jobs per member, a whole number ≥ 1"
    )
    max_queue: int = Field(
        default=100, ge=1, description="waiting jobs in all, a whole number ≥ 1"
    )
    max_extensions: int = Field(
        default=4, ge=0, le=20,
        description="times a clip may be extended in a row, a whole number 0–20 (0: no Extend)",
    )
    max_jobs_per_day: int = Field(
        default=0, ge=0,
        description="videos one member may start in any 24 hours, a whole number ≥ 0 (0: no limit)",
    )
    max_attempts: int = Field(
        default=2, ge=1, le=10, description="tries per job before it fails and is refunded (1–10)"
    )
    job_timeout_seconds: float = Field(
        default=900.0, gt=0, description="seconds a job may run before it is stopped and refunded"
    )
    max_image_bytes: int = Field(
        default=25 * 1024 * 1024, ge=1024, description="largest accepted photo in bytes (≥ 1024)"
    )

    unhealthy_exit_minutes: float = Field(
        default=0.0, ge=0,
        description="minutes the health check may fail in a row before the bot exits with code 3 "
        "for its supervisor to restart it, a number ≥ 0 (0: never)",
    )
    metrics_port: int | None = Field(
        default=None, ge=1, le=65535,
        description="port for GET /metrics and /healthz (1–65535; empty: off)",
    )
    metrics_host: str = Field(
        default="127.0.0.1", min_length=1,
        description="address the health endpoint listens on (0.0.0.0: every interface)",
    )

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="DEBUG, INFO, WARNING or ERROR"
    )

    @field_validator(
        "guild_ids", "admin_user_ids", "allowed_guild_ids", "allowed_channel_ids", "allowed_role_ids",
        mode="before",
    )
    @classmethod
    def _split_ids(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [int(part) for part in value.replace(";", ",").split(",") if part.strip()]
        return value

    @field_validator("blocked_words", mode="before")
    @classmethod
    def _split_words(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip().lower() for part in value.split(",") if part.strip()]
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("discord_api_base")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("not an http(s) URL")
        return value.rstrip("/")

    @field_validator("discord_gateway_url")
    @classmethod
    def _ws_url(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not value.startswith(("ws://", "wss://")):
            raise ValueError("not a ws(s) URL")
        return value

    @field_validator("ray_address", "discord_token", "metrics_port", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("model_costs", "loras", "effects", mode="before")
    @classmethod
    def _costs_json(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return json.loads(value) if value.strip() else {}
            except json.JSONDecodeError:
                raise ValueError("not a JSON object") from None
        return value

    @field_validator("model_costs")
    @classmethod
    def _costs(cls, value: dict[str, float]) -> dict[str, float]:
        if any(not math.isfinite(v) or v < 0 for v in value.values()):
            raise ValueError("costs must be numbers ≥ 0")
        return {**DEFAULT_MODEL_COSTS, **value}

    @field_validator("loras")
    @classmethod
    def _loras(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for model, specs in value.items():
            if model == CAMERA:
                raise ValueError("the camera move has no AI model to put a LoRA into")
            for spec in specs:
                LoraSpec.parse(spec)  # ValueError says which form it wants
        return value

    @field_validator("effects")
    @classmethod
    def _effects(cls, value: dict[str, dict[str, dict[str, Any]]]) -> dict[str, dict[str, dict[str, Any]]]:
        for model, effects in value.items():
            if model == CAMERA:
                raise ValueError("the camera move has no AI model to put an effect into")
            if len(effects) > 25:
                raise ValueError(f"{model} has {len(effects)} effects; Discord lists at most 25")
            for name, entry in effects.items():
                _effect(name, entry)  # ValueError names what is wrong
        return value

    def effects_by_model(self) -> tuple[tuple[str, tuple[Effect, ...]], ...]:
        return tuple(
            (model, tuple(_effect(name, entry) for name, entry in effects.items()))
            for model, effects in self.effects.items()
        )

    @model_validator(mode="after")
    def _models_listed(self) -> Settings:
        if not self.models:
            raise ValueError("MODEL must name at least one model")
        return self

    @field_validator("discord_token_file", "hf_token_file", mode="before")
    @classmethod
    def _readable_file(cls, value: Any) -> Any:
        if value in (None, ""):
            return None
        path = Path(str(value)).expanduser()
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise ValueError(f"{path} cannot be read ({exc.strerror or exc})") from None
        return path

    @model_validator(mode="after")
    def _token_from_file(self) -> Settings:
        """A token file replaces DISCORD_TOKEN; both at once is a mistake worth naming."""
        if self.discord_token_file is None:
            return self
        if self.discord_token is not None:
            raise ValueError("set DISCORD_TOKEN or DISCORD_TOKEN_FILE, not both")
        text = self.discord_token_file.read_text(encoding="utf-8", errors="replace").strip()
        self.discord_token = SecretStr(text) if text else None
        return self

    @property
    def models(self) -> list[str]:
        """Enabled models in order; the first is the default."""
        return [name.strip() for name in self.model.split(",") if name.strip()]

    @property
    def refill_period_seconds(self) -> float:
        return self.refill_period_hours * 3600.0

    def pricing(self) -> Pricing:
        return Pricing(
            per_second=dict(self.model_costs),
            default_per_second=self.default_cost_per_second,
            finish_per_second={
                "smooth": self.smooth_cost_per_second, "upscale": self.upscale_cost_per_second,
            },
        )

    def cost(self, model: str, duration: float) -> int:
        """Credits for a clip: per-second rate × length, rounded up, at least 1."""
        return self.pricing().cost(model, duration)

    def credit_policy(self) -> CreditPolicy:
        return CreditPolicy(
            welcome=self.welcome_credits,
            refill_amount=self.refill_amount,
            refill_period=self.refill_period_seconds,
            refill_cap=self.refill_cap,
        )

    def jobs_config(self) -> JobsConfig:
        """What the job layer needs, as plain data."""
        return JobsConfig(
            models=tuple(self.models),
            output_dir=self.output_dir,
            ray_address=self.ray_address,
            cpu_workers=self.cpu_workers,
            backend=BackendOptions(
                loras=tuple(
                    (model, tuple(LoraSpec.parse(spec) for spec in specs))
                    for model, specs in self.loras.items()
                ),
                effects=self.effects_by_model(),
                offload=self.offload,
                weights=self.weights,
                compile=self.compile,
                cache=self.cache,
                half_frames=self.half_frames,
                attention=self.attention_backend,
            ),
            pricing=self.pricing(),
            max_queued_per_user=self.max_queued_per_user,
            max_queue=self.max_queue,
            max_jobs_per_day=self.max_jobs_per_day or None,
            max_extensions=self.max_extensions,
            max_attempts=self.max_attempts,
            job_timeout_seconds=self.job_timeout_seconds,
            keep_outputs_days=self.keep_outputs_days,
            keep_favourites_days=self.keep_favourites_days,
        )

    def token(self) -> str:
        if self.discord_token is None or not self.discord_token.get_secret_value().strip():
            raise SettingsError(TOKEN_HELP)
        token = self.discord_token.get_secret_value().strip()
        if any(c.isspace() or not c.isprintable() for c in token):
            raise SettingsError(
                "DISCORD_TOKEN contains a space or an invisible character: copy it again from "
                "the Bot page of the developer portal into .env, on one line."
            )
        return token

    @classmethod
    def load(cls, env_file: str | Path | None = ".env", **overrides: Any) -> Settings:
        """Read and validate everything once; raise SettingsError with one readable line."""
        try:
            return cls(_env_file=env_file, **overrides)  # type: ignore[call-arg]
        except ValidationError as exc:
            raise SettingsError(_describe(exc)) from None


def _effect(name: str, entry: Any) -> Effect:
    if not isinstance(entry, dict) or not isinstance(entry.get("loras"), list):
        raise ValueError(f"the effect {name!r} needs {{\"label\": ..., \"loras\": [...]}}")
    unknown = set(entry) - {"label", "loras", "prompt"}
    if unknown:
        raise ValueError(f"the effect {name!r} has unknown keys: {', '.join(sorted(unknown))}")
    return Effect(
        name=name,
        label=str(entry.get("label") or name),
        loras=tuple(LoraSpec.parse(str(spec)) for spec in entry["loras"]),
        prompt=str(entry.get("prompt", "")).strip(),
    )


_REASON_HELPS = frozenset({"loras", "effects"})
"""Settings whose validator's reason names the bad entry in a list (not just the format)."""


def _describe(exc: ValidationError) -> str:
    """One line per bad variable, naming it and what it accepts, never echoing secrets."""
    lines = []
    for error in exc.errors():
        name = str(error["loc"][0]) if error["loc"] else ""
        field = Settings.model_fields.get(name)
        accepts = field.description if field is not None else ""
        shown = "" if name == "discord_token" else f" (got {error.get('input')!r})"
        if name.endswith("_file"):  # the reason (missing, unreadable) is what helps here
            why = error["msg"].removeprefix("Value error, ")
            lines.append(f"Invalid setting {name.upper()}: {why}; expected {accepts}.")
        elif name in _REASON_HELPS and error["type"] == "value_error":  # which entry, and why
            why = error["msg"].removeprefix("Value error, ")
            lines.append(f"Invalid setting {name.upper()}{shown}: {why}; expected {accepts}.")
        elif name:
            lines.append(f"Invalid setting {name.upper()}{shown}: expected {accepts}.")
        else:
            lines.append(f"Invalid settings: {error['msg'].removeprefix('Value error, ')}.")
    return " ".join(lines)
