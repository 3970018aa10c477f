"""The camera's crop plans (pipeline.backends.camera_plan) against the search they shortcut.

The planner looks only at the sizes and offsets that number theory says can come close; the
reference below tries every (m, k) of each level with numpy, as the planner did before it ran
without numpy. Both must pick the same plan: the same narrowest strip within half the tolerance,
the same fallbacks, the same float error. Ties in slope go to the smaller size in both (a stable
sort; numpy's default sort orders ties differently from CPU to CPU).
"""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from PIL import Image

from contract import CAMERA_MOVES, AnimateRequest
from pipeline.backends import camera_plan
from pipeline.backends.camera import CameraBackend, _source_and_views
from pipeline.backends.camera_graph import PAD, _copies, _Planner
from pipeline.backends.camera_plan import AxisPlan, kept_axis, plan_axis


def reference_plan(
    left: float, scale: float, out: int, size: int, *, pad: int, tolerance: float
) -> AxisPlan:
    """Every (m, k) of each level: the narrowest within max(tolerance / 2, least), levels on
    while it errs more than tolerance / 2; the last within tolerance, else the closest."""
    margin = 2.0 * max(1.0, scale) + 1.0
    kmin = math.ceil((margin + 0.5) / scale)
    best: AxisPlan | None = None
    closest: AxisPlan | None = None
    for span, tries in camera_plan._SEARCH:
        m = np.arange(out + 2 * kmin, out + span)
        k = np.arange(kmin, span)[None, :]
        if not len(m) or not k.size:
            continue
        n = np.round(scale * m)
        slope = n / m - scale
        pick = np.argsort(np.abs(slope), kind="stable")[:tries]
        m, n, slope = m[pick, None], n[pick, None], slope[pick, None]
        x0 = np.round(left - k * (n / m))
        offset = x0 + k * (n / m) - left
        error = np.maximum(np.abs(offset + 0.5 * slope), np.abs(offset + (out - 0.5) * slope))
        fits = (
            (k <= m - out - kmin)
            & (x0 >= -pad)
            & (x0 <= left - margin)
            & (x0 + n <= size + pad)
            & (x0 + n >= left + out * scale + margin)
        )
        error = np.where(fits, error, np.inf)
        least = float(error.min())
        if least == np.inf:
            continue
        good = error <= max(tolerance / 2, least)
        row, col = np.unravel_index(int(np.argmin(np.where(good, m + 0 * k, np.inf))), error.shape)
        plan = AxisPlan(
            int(x0[row, col]), int(n[row, 0]), int(m[row, 0]), int(k[0, col]), float(error[row, col])
        )
        if closest is None or plan.error < closest.error:
            closest = plan
        if plan.error <= tolerance:
            best = plan
            if plan.error <= tolerance / 2:
                break
    if closest is None:
        raise ValueError("no plan")
    return best or closest


def reference_kept(
    left: float, scale: float, out: int, size: int, crop: int, scaled: int, *, pad: int, tolerance: float
) -> AxisPlan | None:
    """Every offset k for a kept crop and scaled size: the least error (the smallest k of equals)."""
    margin = 2.0 * max(1.0, scale) + 1.0
    kmin = math.ceil((margin + 0.5) / scale)
    ratio = crop / scaled
    slope = ratio - scale
    k = np.arange(kmin, scaled - out - kmin + 1)
    x0 = np.round(left - k * ratio)
    offset = x0 + k * ratio - left
    error = np.maximum(np.abs(offset + 0.5 * slope), np.abs(offset + (out - 0.5) * slope))
    fits = (
        (x0 >= -pad)
        & (x0 <= left - margin)
        & (x0 + crop <= size + pad)
        & (x0 + crop >= left + out * scale + margin)
    )
    error = np.where(fits, error, np.inf)
    if not len(error) or error.min() > tolerance:
        return None
    best = int(np.argmin(error))
    return AxisPlan(int(x0[best]), crop, scaled, int(k[best]), float(error[best]))


def random_axes(count: int, seed: int) -> list[tuple[tuple[float, float, int, int], dict[str, float]]]:
    """Views of every kind: scales from 0.2 to 4 (some at or a hair off simple fractions, where
    few offsets are reachable), views inside the plane and some reaching past it."""
    rng = random.Random(seed)
    axes = []
    for _ in range(count):
        out = rng.choice([90, 160, 180, 240, 320, 360, 640, 720, 1280])
        if rng.random() < 0.15:
            fraction = rng.choice([1.0, 1.25, 0.5, 0.75, 2.0, 1.5, 4 / 3, 2 / 3, 0.8, 1.2])
            scale = fraction * (1 + rng.choice([0.0, 1e-9, -1e-7, 1e-5, 3e-4]))
        else:
            scale = math.exp(rng.uniform(math.log(0.2), math.log(4)))
        pad = rng.choice([160, 320])
        size = max(out, int(out * scale * rng.uniform(1.0, 3.0)) + rng.randint(0, 50))
        inside = max(0.0, size - out * scale)
        left = rng.uniform(-0.5, inside + 0.5) if rng.random() < 0.9 else rng.uniform(-pad / 2, size)
        tolerance = rng.choice([0.004, 0.01, 0.02, 0.05, rng.uniform(0.004, 0.05)])
        axes.append(((left, scale, out, size), {"pad": pad, "tolerance": tolerance}))
    return axes


def outcome(plan: object, *args: object, **options: object) -> object:
    try:
        return plan(*args, **options)  # type: ignore[operator]
    except ValueError:
        return ValueError


@pytest.mark.parametrize("seed", [1, 2])
def test_plans_are_those_a_search_of_every_candidate_picks(seed: int) -> None:
    for args, options in random_axes(1500, seed):
        expected = outcome(reference_plan, *args, **options)
        assert outcome(plan_axis.__wrapped__, *args, **options) == expected, (args, options)
        if isinstance(expected, AxisPlan):  # keep its sizes for a view a little further on
            moved = (args[0] + 0.37, *args[1:])
            sizes = (expected.crop, expected.scaled)
            assert kept_axis(*moved, *sizes, **options) == reference_kept(*moved, *sizes, **options), (
                moved, sizes, options,
            )  # fmt: skip


@pytest.mark.parametrize("move", CAMERA_MOVES)
def test_every_frame_of_a_move_is_planned_as_the_search_would(move: str) -> None:
    # The calls a real clip makes (its views on both copies, luma and chroma, x and y), for a
    # 5 s 1280×720 clip of a 600×400 photo at motion 1 and 10.
    backend = CameraBackend()
    for motion in (1, 10):
        request = AnimateRequest(image=b"-", camera=move, motion=motion, duration=5, width=1280, height=720)
        plan = backend.plan(request, (600, 400))
        image = Image.new("RGB", plan.source_size or (plan.width, plan.height))
        source, views = _source_and_views(image, plan, request, even=True)
        if any(view.roll for view in views):
            continue  # orbit rolls: perspective draws it, no crops planned
        planner = _Planner(views, _copies(source), (plan.width, plan.height))
        for frame in range(0, len(views), 7):
            for copy in range(len(planner.copies)):
                for div, axes in zip((1, 2), planner._axes(copy, frame), strict=True):
                    for axis in axes:
                        options = {"pad": PAD // div, "tolerance": planner.allowed[frame]}
                        expected = outcome(reference_plan, *axis, **options)
                        assert outcome(plan_axis.__wrapped__, *axis, **options) == expected, (frame, axis)


@pytest.mark.parametrize(
    ("left", "tolerance"), [(93.6, -0.05), (93.6, float("nan")), (float("nan"), 0.05), (float("inf"), 0.05)]
)
def test_a_view_or_tolerance_that_is_no_number_is_refused_not_searched_forever(
    left: float, tolerance: float
) -> None:
    # The searches widen until they reach the tolerance: a negative or NaN one never came.
    with pytest.raises(ValueError, match="no plan"):
        plan_axis.__wrapped__(left, 2.91, 640, 321, pad=0, tolerance=tolerance)
    with pytest.raises(ValueError, match="no plan"):
        kept_axis(left, 1.0, 1280, 1300, 1288, 1288, pad=320, tolerance=tolerance)
