"""What each enabled model offers and costs: lengths, prompt/end-image/extend support, price.

Read from the pipeline's presets (plain data, no torch), so /balance, autocomplete and the
refusals of /animate agree with what the workers will actually do.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.settings import Settings

CAMERA_DURATIONS: tuple[float, ...] = (2.0, 3.0, 5.0, 8.0)
DEFAULT_DURATIONS: tuple[float, ...] = (2.0, 3.0, 5.0)


@dataclass(frozen=True)
class ModelTraits:
    name: str
    label: str
    durations: tuple[float, ...]
    supports_prompt: bool = True
    supports_end_image: bool = False
    supports_extend: bool = True
    is_ai: bool = True


def traits(model: str) -> ModelTraits:
    if model == "camera":
        return ModelTraits(
            "camera", "Camera move (no AI)", CAMERA_DURATIONS, supports_prompt=False, is_ai=False
        )
    from pipeline.presets import PRESETS

    preset = PRESETS.get(model)
    if preset is None:  # a local directory or repo id: its family's rules apply in the worker
        return ModelTraits(model, model, DEFAULT_DURATIONS)
    return ModelTraits(
        model,
        preset.label,
        preset.durations,
        supports_prompt=preset.supports_prompt,
        supports_end_image=preset.supports_end_image,
        supports_extend=preset.supports_extend,
    )


def working_size(model: str, aspect: float) -> tuple[int, int] | None:
    """The width×height the model renders a photo of this aspect at (as the workers choose
    it), so /animate can warn about a low-resolution photo before the member pays; None for
    a model known only to the workers (a local directory or repo id)."""
    from pipeline import intake

    if model == "camera":
        from pipeline.backends.camera import DEFAULT_AREA, MAX_SIDE, SIZE_MULTIPLE

        return intake.size_for_area(aspect, DEFAULT_AREA, SIZE_MULTIPLE, max_side=MAX_SIDE)
    from pipeline.presets import PRESETS, snap_size

    preset = PRESETS.get(model)
    if preset is None:
        return None
    if preset.area:
        return intake.size_for_area(aspect, preset.area, preset.multiple)
    if preset.buckets:
        return snap_size(*intake.choose_size(aspect, preset.buckets), preset.multiple)
    return None


def durations(model: str) -> tuple[float, ...]:
    return traits(model).durations


def supports_extend(model: str) -> bool:
    return traits(model).supports_extend


@dataclass(frozen=True)
class Price:
    model: str
    duration: float
    credits: int


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
