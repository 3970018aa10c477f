"""Prices as /balance lists them, from the model cards and the operator's pricing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from contract import ModelCard, card_for
from jobs import Pricing


@dataclass(frozen=True)
class Price:
    model: str
    duration: float
    credits: int


def price_list(
    pricing: Pricing, models: list[str], card: Callable[[str], ModelCard] = card_for
) -> list[Price]:
    """Each model's lengths (`card`: JobService.card, which knows what a directory makes)."""
    return [
        Price(model, seconds, pricing.cost(model, seconds))
        for model in models
        for seconds in card(model).durations
    ]


def format_prices(prices: list[Price]) -> str:
    by_model: dict[str, list[str]] = {}
    for price in prices:
        by_model.setdefault(price.model, []).append(f"{price.duration:g} s: {price.credits}")
    return "\n".join(f"**{model}** — " + " · ".join(items) for model, items in by_model.items())
