"""One :class:`ModelCard` per model: what members are told and may choose, in one place.

The bot's catalog (labels, lengths, refusals, the low-resolution warning before paying) and
the backends' self-descriptions are both read from these cards, so they cannot disagree.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from contract.sizes import choose_size, size_for_area, snap_size

CAMERA = "camera"
AUTO = "auto"


@dataclass(frozen=True)
class ModelCard:
    """A model as members see it, and the size rule its workers render by."""

    name: str
    label: str
    durations: tuple[float, ...] = (2.0, 3.0, 5.0)
    """Clip lengths (seconds) members may choose."""
    supports_prompt: bool = True
    supports_end_image: bool = False
    supports_extend: bool = True
    supports_audio: bool = False
    is_ai: bool = True
    uses_seed: bool = True
    """Different seeds draw different clips. False where every seed draws the same clip (the
    camera move): takes of one job would be identical, so variations are refused."""
    area: int | None = None
    """Pixel budget: width×height near this, aspect from the photo (else `buckets`)."""
    buckets: tuple[tuple[int, int], ...] = ()
    """Supported (width, height) pairs; the photo picks the closest aspect ratio."""
    multiple: int = 16
    """Width and height are multiples of this."""
    max_side: int | None = None

    @property
    def default_duration(self) -> float:
        return self.durations[min(1, len(self.durations) - 1)]

    def allows_duration(self, seconds: float) -> bool:
        return any(abs(seconds - d) < 1e-6 for d in self.durations)

    def working_size(self, aspect: float) -> tuple[int, int] | None:
        """The width×height a photo of this aspect renders at; None when the card has no rule
        (a model known only to the workers: a local directory or repo id)."""
        if self.area:
            return size_for_area(aspect, self.area, self.multiple, max_side=self.max_side)
        if self.buckets:
            return snap_size(*choose_size(aspect, self.buckets), self.multiple)
        return None


CARDS: dict[str, ModelCard] = {
    card.name: card
    for card in (
        ModelCard(
            name=CAMERA,
            label="Camera move (no AI)",
            durations=(2.0, 3.0, 5.0, 8.0),
            supports_prompt=False,
            is_ai=False,
            uses_seed=False,
            area=1280 * 720,
            multiple=16,
            max_side=1920,
        ),
        ModelCard(
            name="ltx",
            label="LTX-Video 0.9.8 13B distilled (fast)",
            durations=(2.0, 3.0, 5.0, 8.0),
            supports_end_image=True,
            area=832 * 480,
            multiple=32,
        ),
        ModelCard(
            name="ltx-2b",
            label="LTX-Video 0.9.8 2B distilled (fastest, small GPUs)",
            durations=(2.0, 3.0, 5.0, 8.0),
            supports_end_image=True,
            area=768 * 512,
            multiple=32,
        ),
        ModelCard(
            name="ltx2",
            label="LTX-2.3 22B distilled, with sound",
            durations=(2.0, 3.0, 5.0, 8.0, 10.0),
            supports_audio=True,
            area=768 * 512,
            multiple=32,
        ),
        ModelCard(
            name="wan",
            label="Wan 2.2 TI2V 5B (balanced)",
            # expand_timesteps pipelines ignore last_image
            area=1280 * 704,
            multiple=32,
        ),
        ModelCard(
            name="wan-14b",
            label="Wan 2.2 I2V A14B (quality)",
            supports_end_image=True,
            area=480 * 832,
            multiple=16,
        ),
        ModelCard(
            name="wan-14b-fast",
            label="Wan 2.2 I2V A14B Lightning (4 steps, fast)",
            supports_end_image=True,
            area=480 * 832,
            multiple=16,
        ),
        ModelCard(
            name="svd",
            label="Stable Video Diffusion XT (no text prompt)",
            durations=(2.0, 3.0),
            supports_prompt=False,
            buckets=((1024, 576), (576, 1024)),
            multiple=64,
        ),
        ModelCard(
            name="cogvideox",
            label="CogVideoX 5B I2V",
            durations=(6.0,),
            buckets=((720, 480),),
            multiple=16,
        ),
    )
}


def identical_takes(name: str, *, is_ai: bool = True) -> str:
    """The one sentence refusing variations (more than one take) on a model that does not
    use the seed (``uses_seed`` False): its takes would all be the same clip."""
    what = f"`{name}`" if is_ai else "The camera move"
    return (
        f"{what} draws the same clip every time, so takes would be identical: pick an AI model "
        "for variations, or ask for 1 take."
    )


def card_for(name: str, like: str | None = None) -> ModelCard:
    """The card of a preset, or of a model only the workers know (a directory or repo id):
    `like` names the preset whose rules it follows (its family's, as its worker reports:
    WorkerInfo.cards), whose lengths, sizes and abilities it then has under its own name;
    without one, a plain card."""
    if name in CARDS:
        return CARDS[name]
    if like in CARDS:
        return dataclasses.replace(CARDS[like], name=name, label=name)  # type: ignore[index]
    return ModelCard(name=name, label=name)
