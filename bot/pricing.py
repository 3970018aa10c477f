"""What each enabled model costs per clip length: shown by /balance, charged by /animate."""

from __future__ import annotations

from dataclasses import dataclass

from bot.settings import Settings

CAMERA_DURATIONS: tuple[float, ...] = (2.0, 3.0, 5.0, 8.0)
DEFAULT_DURATIONS: tuple[float, ...] = (2.0, 3.0, 5.0)


@dataclass(frozen=True)
class Price:
    model: str
    duration: float
    credits: int


def durations(model: str) -> tuple[float, ...]:
    """Clip lengths a member may choose for a model (plain data: no torch import)."""
    if model == "camera":
        return CAMERA_DURATIONS
    from pipeline.presets import PRESETS

    preset = PRESETS.get(model)
    return preset.durations if preset is not None else DEFAULT_DURATIONS


def price_list(settings: Settings, models: list[str]) -> list[Price]:
    return [
        Price(model, seconds, settings.cost(model, seconds))
        for model in models
        for seconds in durations(model)
    ]


def format_prices(prices: list[Price]) -> str:
    by_model: dict[str, list[str]] = {}
    for price in prices:
        by_model.setdefault(price.model, []).append(f"{price.duration:g} s: {price.credits}")
    return "\n".join(f"**{model}** — " + " · ".join(items) for model, items in by_model.items())
