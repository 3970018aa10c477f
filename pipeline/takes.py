"""Variations: several takes of one request, each with its own seed, back to back on the model
that is already loaded.

Take i (1-based) uses seed + i - 1 (wrapping at SEED_MAX), so every take can be made again on
its own with the seed Info shows. When the request has no seed, one is drawn here, once, so
the takes still differ by exactly one.

Back to back rather than batched (``num_videos_per_prompt``): every backend renders one clip,
a batch multiplies the activations' memory by the number of takes (the memory plan counts one
clip), and a take that fails alone must not take the others with it. The model stays loaded
between takes, so each take costs what a single clip costs after the first load. Whether a
batch is faster where memory allows has not been measured (no GPU was lent to this work): a
batch of 2 or 4 shares the text encoding and the per-step launch overhead, which matters
little for the large video transformers at 4-8 steps.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from contract import (
    SEED_MAX,
    AnimateRequest,
    AnimateResult,
    Cancelled,
    Failed,
    InputError,
    PipelineError,
    Progress,
    Takes,
    identical_takes,
    is_out_of_memory,
    random_seed,
)

if TYPE_CHECKING:
    from pipeline.backends.base import Backend
    from pipeline.intake import OpenedPhoto, Photo

INTERNAL_REASON = "Something went wrong while rendering this take."


def take_seeds(seed: int | None, takes: int) -> list[int]:
    """The seed of each take: `seed`, `seed + 1`, ... (a random start when None)."""
    start = random_seed(SEED_MAX + 1) if seed is None else int(seed)
    return [(start + i) % (SEED_MAX + 1) for i in range(takes)]


def take_path(out_path: str | os.PathLike[str], take: int) -> Path:
    """Where the CLI writes take `take`: the path itself for take 1, then ``clip-2.mp4`` ..."""
    path = Path(out_path)
    return path if take == 1 else path.with_name(f"{path.stem}-{take}{path.suffix}")


def animate_takes(
    request: AnimateRequest,
    backend: Backend,
    *,
    emit: Callable[[Progress], None] = lambda progress: None,
    should_stop: Callable[[], bool] = lambda: False,
    out_path: str | os.PathLike[str] | None = None,
    photo: Photo | OpenedPhoto | None = None,
) -> Takes | Failed:
    """Render ``request.variations`` takes one after another on `backend`.

    Each take is a full :func:`pipeline.animate.animate` with its own seed and the request's
    byte limit (the caller sets it per take). A take whose render fails for its own reasons
    (the model gave up on that seed, an unexpected error) is recorded and the next one runs;
    cancelling and anything worth a retry (out of memory) end the whole job, as for a single
    clip. All
    takes failed: the first take's Failed, so the job is retried or refunded as a whole.
    Raises InputError, before any take, on a backend whose clip does not depend on the seed
    (``info.uses_seed`` False: the camera move): its takes would be identical.
    """
    from pipeline.animate import animate
    from pipeline.intake import open_photo

    if request.variations > 1 and not getattr(backend.info, "uses_seed", True):
        # The camera move: every seed draws the same clip, so the takes would be copies.
        raise InputError(identical_takes(backend.info.name, is_ai=backend.info.is_ai))
    if photo is None:  # opened once: each take's decode of it is kept (OpenedPhoto.decode)
        photo = open_photo(request.image)
    count = max(1, int(request.variations))
    results: list[AnimateResult | Failed] = []
    for take, seed in enumerate(take_seeds(request.seed, count), 1):
        one = request.replace(seed=seed, variations=1)

        def tagged(progress: Progress, take: int = take) -> None:
            emit(dataclasses.replace(progress, take=take, takes=count))

        path = take_path(out_path, take) if out_path is not None else None
        try:
            result = animate(
                one, backend, emit=tagged, should_stop=should_stop, out_path=path, photo=photo
            )
        except Cancelled:
            raise
        except PipelineError as exc:
            if exc.to_event().retryable:  # the job is tried again as a whole
                raise
            results.append(exc.to_event())
            continue
        except Exception as exc:  # noqa: BLE001 - one take's bug must not lose the others
            if is_out_of_memory(exc):
                raise
            results.append(Failed(INTERNAL_REASON, kind="internal"))
            continue
        results.append(result)
    if not any(isinstance(r, AnimateResult) for r in results):
        first = results[0]
        assert isinstance(first, Failed)
        return first
    return Takes(tuple(results))


__all__ = ["animate_takes", "take_path", "take_seeds"]
