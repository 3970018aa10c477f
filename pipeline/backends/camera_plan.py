"""Where swscale must crop and scale one axis of a plane so that a view lands within a few
hundredths of a pixel of where it should (:mod:`pipeline.backends.camera_graph` draws the camera
move with these numbers).

swscale crops only at whole pixels. A crop of n pixels scaled to m pixels and cut at offset k
samples output pixel d at x0 + (d + 0.5)·n/m − 0.5 + k·n/m, so the view's sub-pixel position
comes from k·n/m (mod 1) and its scale from n/m. Finding the (n, m, k) that come closest is a
search over hundreds of candidates per axis per frame; it runs in plain Python (a camera clip
through the CLI imports no numpy: 45 ms of a 0.6 s run) with number theory instead of trying
every candidate: a plan errs by |o − c| + (out − 1)/2·|n/m − scale| (o its offset x0 + k·n/m −
left, c = −out·(n/m − scale)/2), so only the
sizes m where scale·m comes near a whole number, and only the k whose k·scale comes near the
view's phase, are looked at; continued fractions and a modular inverse list those directly.
The plans are those a search of every candidate picks (``tests/test_camera_plan.py`` holds that
search, in numpy, as the reference).
"""

from __future__ import annotations

import bisect
import functools
import itertools
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

TOLERANCE = 0.05
"""Largest sampling-position error (source pixels) a plan aims for; the slowest frames of an
eased move get a share of their own travel instead
(:func:`pipeline.backends.camera_graph.tolerances`)."""

_SEARCH = ((160, 16), (640, 16), (640, 64))
"""How far a plan looks, until one comes within tolerance: how many extra scaled pixels it may
use (a few in most frames, more near scales where few offsets are reachable), and how many of
the scaled sizes whose ratio comes closest to the view's it tries."""


@dataclass(frozen=True)
class AxisPlan:
    """One axis of a view as swscale can draw it: crop [start, start + crop) of the padded
    source plane, scale that to `scaled` pixels, keep [offset, offset + out) of them."""

    start: int
    crop: int
    scaled: int
    offset: int
    error: float
    """Largest distance (source pixels) between where an output pixel samples and where the
    exact view would sample it."""


_SLACK = 1e-7
"""How far past its bound (in fractions of a pixel) a search below looks: far more than floats
round by, so every candidate the exact formula could accept is among those it checks."""

_FEW = 12
"""A range of k this short is checked k by k: quicker than finding the few near a target."""


@functools.lru_cache(maxsize=4096)  # a pan's other axis is the same plan in every frame
def plan_axis(
    left: float, scale: float, out: int, size: int, *, pad: int, tolerance: float = TOLERANCE
) -> AxisPlan:
    """The integer crop/scale/offset whose composition best matches a float view: the
    narrowest within `tolerance`, else the most accurate found (see its `error`).

    The exact view samples output pixel d at source coordinate left + (d + 0.5)·scale − 0.5
    (pixel centres). swscale maps pixel e of a crop [x0, x0 + n) scaled to m pixels to
    x0 + (e + 0.5)·n/m − 0.5, so keeping e = d + k errs by
    (x0 + k·n/m − left) + (d + 0.5)·(n/m − scale). The m whose n/m is closest to `scale` fix
    the second term; the offsets k·n/m (mod 1) reachable with k below the span fix the first,
    and they are dense unless n/m is close to a simple fraction (1/1, 5/4 ...), where a wider
    span and more sizes help. Whole-pixel crops alone (zoompan) are off by up to half a pixel.

    Each level of _SEARCH takes, of its `tries` sizes m closest in slope (the smaller m of
    equals), the plans within max(tolerance / 2, the least error found): the smallest m (the
    narrowest strip: fewer pixels for swscale), then the smallest k. Levels go on while the
    plan errs more than tolerance / 2; the last within `tolerance` is kept, else the most
    accurate. So the first level with a plan within half the tolerance decides, and only when
    none has one do the levels' least errors matter.

    This runs hundreds of times a clip, in pure Python, so no level lists every (m, k): a plan
    errs by |o − c| + (out − 1)/2·|slope| (o its offset, c = −out·slope/2), so the sizes whose
    slope alone errs too much are never looked at (:func:`_sizes`), and of the k only those
    whose offset comes near c (:func:`_near`).

    left, scale: the view's left edge and source pixels per output pixel; size: the source
    plane's length (without its padding).
    """
    _check(left, scale, tolerance)
    axis = _Axis(left, scale, out, size, pad)
    for span, tries in _SEARCH:
        plan = axis.within_half(span, tries, tolerance)
        if plan is not None:
            return plan
    best: AxisPlan | None = None
    closest: AxisPlan | None = None
    for span, tries in _SEARCH:
        plan = axis.least_error(span, tries, tolerance)
        if plan is None:
            continue
        if closest is None or plan.error < closest.error:
            closest = plan
        if plan.error <= tolerance:
            best = plan
    if closest is None:
        raise ValueError(f"no crop of a {size}-pixel plane shows {out} pixels at scale {scale}")
    return best or closest


def kept_axis(
    left: float, scale: float, out: int, size: int, crop: int, scaled: int, *,
    pad: int, tolerance: float = TOLERANCE,
) -> AxisPlan | None:
    """The plan that keeps a crop length and scaled size (the previous frame's), moving only
    the crop's start and the offset, when one comes within `tolerance`; else None (of
    equally good offsets, the smallest).

    swscale is set up again for every new pair of sizes, which costs about as much as the
    scaling itself; a pan or tilt (one zoom throughout) keeps its sizes frame after frame, its
    sub-pixel steps coming from the offsets k·crop/scaled (mod 1) alone."""
    _check(left, scale, tolerance)
    axis = _Axis(left, scale, out, size, pad)
    ratio = crop / scaled
    slope = ratio - scale
    least = axis.reach * abs(slope)  # no offset errs less
    if least > tolerance + 1e-12:
        return None
    first, last = axis.ks(crop, ratio, scaled - out - axis.kmin)
    found = axis.least(crop, ratio, slope, first, last, tolerance - least, _fraction(ratio, last - first + 1))
    if found is None or found[0] > tolerance:
        return None
    error, k, x0 = found
    return AxisPlan(x0, crop, scaled, k, error)


def _check(left: float, scale: float, tolerance: float) -> None:
    """The searches below widen until they reach the tolerance: a negative or NaN one (or a
    view that is not a number) would never end them."""
    if not (tolerance >= 0 and math.isfinite(left) and math.isfinite(scale) and scale > 0):
        raise ValueError(f"no plan for a view at {left} × {scale} within {tolerance} px")


class _Axis:
    """One axis of one view, as plan_axis and kept_axis search it: a plan's exact error (the
    same float formula, whichever search found it) and the searches. Levels of one span share
    what they found: a level with more sizes searches only the sizes new to it."""

    def __init__(self, left: float, scale: float, out: int, size: int, pad: int) -> None:
        self.left, self.scale, self.out, self.pad = left, scale, out, pad
        margin = 2.0 * max(1.0, scale) + 1.0  # the bicubic kernel's reach, in source pixels
        self.kmin = math.ceil((margin + 0.5) / scale)
        self.inside = left - margin  # where a crop must start by
        self.right = left + out * scale + margin  # and reach
        self.end = size + pad  # the padded plane's end
        self.reach = (out - 1) / 2  # a plan errs by at least this times |slope|
        # Per span: the sizes searched within half the tolerance; the sizes searched for the
        # least error, that least and the plans that came within it.
        self.tried: dict[int, set[int]] = {}
        self.weighed: dict[int, tuple[set[int], float, list[tuple[float, int, int, int]]]] = {}
        self.near: dict[int, tuple[int, list[int]]] = {}  # per span, see within

    def ks(self, n: int, ratio: float, last: int) -> tuple[int, int]:
        """The k from kmin to `last` whose crop of n pixels may fit (give or take one each
        side: the error's own check decides)."""
        low = max(-self.pad, math.ceil(self.right) - n)  # the crop's start, at least
        high = min(math.floor(self.inside), self.end - n)  # and at most
        if low > high or n <= 0:
            return self.kmin, self.kmin - 1
        first = max(self.kmin, math.ceil((self.left - high - 0.5) / ratio) - 1)
        return first, min(last, math.floor((self.left - low + 0.5) / ratio) + 1)

    def errors(
        self, ks: Iterable[int], n: int, ratio: float, slope: float
    ) -> Iterator[tuple[float, int, int]]:
        """Each k's error (its crop's start rounded to the view), with k and that start, for
        the k whose crop fits."""
        left, inside, right, end, lowest = self.left, self.inside, self.right, self.end, -self.pad
        near, far = 0.5 * slope, (self.out - 0.5) * slope
        for k in ks:
            x0 = round(left - k * ratio)
            if lowest <= x0 <= inside and right <= x0 + n <= end:
                offset = x0 + k * ratio - left
                yield max(abs(offset + near), abs(offset + far)), k, x0

    def candidates(
        self, ratio: float, slope: float, first: int, last: int, within: float, fraction: Fraction3
    ) -> Sequence[int]:
        """The k from `first` to `last` whose offset may come within `within` of c (and a few
        more), ascending; `fraction` approximates ratio (see :func:`_near`)."""
        centre = self.left - self.out * slope / 2  # o − c = k·ratio − centre, less a whole number
        if last - first < _FEW:
            spread = within + _SLACK
            return [k for k in range(first, last + 1) if abs((d := k * ratio - centre) - round(d)) <= spread]
        return _near(ratio, centre, first, last + 1, within, fraction)

    def least(
        self, n: int, ratio: float, slope: float, first: int, last: int, within: float, fraction: Fraction3
    ) -> tuple[float, int, int] | None:
        """The least error of a k from `first` to `last` (the smallest k of equals), that k
        and its start, looking no further than `within` past the slope's own error; None if
        no crop fits there."""
        if last < first:
            return None
        floor = self.reach * abs(slope)
        width = min(within, 2 / (last - first + 1))  # the two or three k nearest c: most often enough
        while True:
            ks = self.candidates(ratio, slope, first, last, width, fraction)
            found = min(self.errors(ks, n, ratio, slope), default=None)
            # Every k that errs less than the one found lies within the width looked at.
            if (found is not None and found[0] <= floor + width) or width >= min(within, 1.0):
                return found
            width = min(within, 4 * width)

    def within(
        self, sizes: Sequence[int], span: int, half: float, sigma: float, fraction: Fraction3
    ) -> AxisPlan | None:
        """Of scaled sizes `sizes` (ascending, slopes within sigma), the smallest m and then k
        from kmin up to span and m − out − kmin erring no more than `half`; None if none.

        With s = n/m − scale, a plan's offset is o = F + k·s (F: k·scale − left, less a whole
        number; |k·s| < 1/2) and it errs by max(|o + s/2|, |o + s·(out − 1/2)|): only the k
        with F within half + sigma·span of a whole number can, each for an interval of s.
        Taking those k in order, each the smallest m it allows, ends where k alone needs an m
        no smaller."""
        if not sizes:
            return None
        left, scale, out, kmin = self.left, self.scale, self.out, self.kmin
        inside, right, end, lowest = self.inside, self.right, self.end, -self.pad
        h = half + _SLACK
        best: AxisPlan | None = None
        limit = sizes[-1] + 1  # no m from here on can do better
        stop = min(span, limit - out - kmin)
        if self.near.get(span, (0, []))[0] < stop:  # levels of one span share these k
            self.near[span] = (stop, list(_near(scale, left, kmin, stop, half + sigma * span, fraction)))
        for k in self.near[span][1]:
            smallest = k + out + kmin  # m − out − kmin ≥ k
            if smallest >= limit:
                break
            d = k * scale - left
            f = d - round(d)
            a, b = k + 0.5, k + out - 0.5
            lo, hi = max((-h - f) / a, (-h - f) / b), min((h - f) / a, (h - f) / b)
            if abs(f) > 0.5 - h - 1e-9:  # o may be F + k·s ∓ 1 (|k·s| < 1/2): the hull of both
                g = f - 1 if f > 0 else f + 1
                wrapped = max((-h - g) / a, (-h - g) / b), min((h - g) / a, (h - g) / b)
                if wrapped[0] <= wrapped[1]:
                    lo, hi = wrapped if lo > hi else (min(lo, wrapped[0]), max(hi, wrapped[1]))
            if lo > hi:
                continue
            for index in range(bisect.bisect_left(sizes, smallest), len(sizes)):
                m = sizes[index]
                if m >= limit:
                    break
                n = round(scale * m)
                ratio = n / m
                slope = ratio - scale
                if lo <= slope <= hi:
                    x0 = round(left - k * ratio)
                    if lowest <= x0 <= inside and right <= x0 + n <= end:
                        offset = x0 + k * ratio - left
                        error = max(abs(offset + 0.5 * slope), abs(offset + (out - 0.5) * slope))
                        if error <= half:
                            best, limit = AxisPlan(x0, n, m, k, error), m
                            break
        return best

    def within_half(self, span: int, tries: int, tolerance: float) -> AxisPlan | None:
        """A level of plan_axis's search: of the `tries` sizes m from out + 2·kmin up to
        out + span with the least slope (the smaller m of equals) and the k from kmin up to
        span and m − out − kmin, the smallest m and then k erring no more than
        tolerance / 2; None if none does."""
        out, kmin, scale, reach = self.out, self.kmin, self.scale, self.reach
        low, high = out + 2 * kmin, out + span
        if low >= high or kmin >= span:
            return None
        half = tolerance / 2
        # The sizes whose slope alone may come within half the tolerance, less those a level
        # of this span has searched.
        sigma = min(0.5 / low + 1e-12, (half + 1e-12) / reach) if reach else 0.5 / low + 1e-12
        sizes = _slight(scale, low, high, sigma, tries)
        if span in self.tried:
            sizes = tuple(m for m in sizes if m not in self.tried[span])
            self.tried[span].update(sizes)
        else:
            self.tried[span] = set(sizes)
        return self.within(sizes, span, half, sigma, _fraction(scale, high - low))

    def least_error(self, span: int, tries: int, tolerance: float) -> AxisPlan | None:
        """A level of plan_axis's search where no plan comes within tolerance / 2: the
        smallest m and then k of the plans that err least; None when no plan fits.

        Each size's least error, by slope, until a slope alone errs more than the least
        found (more sizes if those run out first); a level of this span searched before
        leaves its sizes and the plans that erred least."""
        out, kmin, scale, reach = self.out, self.kmin, self.scale, self.reach
        low, high = out + 2 * kmin, out + span
        if low >= high or kmin >= span:
            return None
        every = 0.5 / low + 1e-12  # no slope is larger
        sigma = min(every, (tolerance / 2 + 1e-12) / reach) if reach else every
        fraction = _fraction(scale, high - low)  # close to every n/m here (within a slope)
        weighed, least, plans = self.weighed.get(span, (set(), math.inf, []))
        plans = list(plans)
        by_slope = _sizes(scale, low, high, sigma, tries)
        done = 0
        while True:
            for slope_size, m in by_slope[done:]:
                floor = reach * slope_size
                if floor - 1e-12 > least:
                    break
                if m in weighed:
                    continue
                weighed.add(m)
                n = round(scale * m)
                ratio = n / m
                slope = ratio - scale
                first, last = self.ks(n, ratio, min(span - 1, m - out - kmin))
                if first > last:
                    continue
                if least == math.inf:
                    found = self.least(n, ratio, slope, first, last, math.inf, fraction)
                    if found is not None:
                        least = found[0]
                        plans.append((least, m, found[1], found[2]))
                    continue
                # Only the k that would beat the least so far.
                ks = self.candidates(ratio, slope, first, last, least - floor + 1e-12, fraction)
                for error, k, x0 in self.errors(ks, n, ratio, slope):
                    if error <= least:
                        least = error
                        plans.append((error, m, k, x0))
            else:
                if len(by_slope) < tries and sigma < every and least > reach * sigma:
                    done = len(by_slope)
                    sigma = min(every, max(4 * sigma, (least + 1e-12) / reach if least < math.inf else 0))
                    by_slope = _sizes(scale, low, high, sigma, tries)
                    continue
            break
        self.weighed[span] = (weighed, least, plans)
        if not plans:
            return None
        error, m, k, x0 = min(plan for plan in plans if plan[0] == least)
        return AxisPlan(x0, round(scale * m), m, k, error)


@functools.lru_cache(maxsize=256)  # a pan or tilt keeps its scale, and these, frame after frame
def _sizes(scale: float, low: int, high: int, sigma: float, tries: int) -> tuple[tuple[float, int], ...]:
    """Of the scaled sizes m from `low` up to `high`, those whose slope
    |round(scale·m)/m − scale| is within `sigma`, as (|slope|, m), the least slope first (the
    smaller m of equals), at most `tries`: m·scale comes within sigma·m of a whole number."""
    width = sigma * (high - 1)
    expected = 2 * width * (high - low)  # how many there are, about
    if expected > 4 * tries:  # a narrower band first: most often enough
        found = _sizes(scale, low, high, sigma * 2 * tries / expected, tries)
        if len(found) == tries:
            return found
    slopes = (
        (abs(round(scale * m) / m - scale), m)
        for m in _near(scale, 0.0, low, high, width, _fraction(scale, high - low))
    )
    return tuple(sorted(size for size in slopes if size[0] <= sigma)[:tries])


@functools.lru_cache(maxsize=256)
def _slight(scale: float, low: int, high: int, sigma: float, tries: int) -> tuple[int, ...]:
    """The scaled sizes m from `low` up to `high` (ascending) among the `tries` of least slope
    whose slope is within `sigma`, and perhaps a few whose slope is not (none of their plans
    errs less than (out − 1)/2·sigma): exact slopes only where more than `tries` may be."""
    width = sigma * (high - 1)
    if 2 * width * (high - low) > 4 * tries:  # about how many: take a narrower band first
        return tuple(sorted(m for _, m in _sizes(scale, low, high, sigma, tries)))
    found = _near(scale, 0.0, low, high, width, _fraction(scale, high - low))
    if len(found) <= tries:
        return tuple(found)
    slopes = [abs(round(scale * m) / m - scale) for m in found]
    small = sorted(slope for slope in slopes if slope <= sigma)
    cut = small[min(tries, len(small)) - 1] if small else -1.0  # the largest slope kept
    kept = [m for m, slope in zip(found, slopes, strict=True) if slope <= cut]
    if len(kept) > tries:  # slopes equal to the cut: the smaller m
        ties = tries - small.index(cut)
        kept = [
            m
            for m, slope in zip(found, slopes, strict=True)
            if slope < cut or (slope == cut and (ties := ties - 1) >= 0)
        ]
    return tuple(kept)


Fraction3 = tuple[int, int, int]
"""p, q and the inverse of p mod q: an approximation of a ratio, for :func:`_near`."""


@functools.lru_cache(maxsize=256)
def _fraction(alpha: float, limit: int) -> Fraction3:
    """p/q close to alpha with q ≤ limit (the last continued-fraction convergent that fits),
    and p's inverse mod q."""
    whole = math.floor(alpha)
    p0, q0, p, q = 1, 0, whole, 1
    rest = alpha - whole
    while rest > 1e-9:
        rest = 1 / rest
        term = math.floor(rest)
        rest -= term
        if term * q + q0 > limit:
            break
        p0, q0, p, q = p, q, term * p + p0, term * q + q0
    return p, q, pow(p, -1, q)


def _near(
    alpha: float, phase: float, low: int, high: int, width: float, fraction: Fraction3
) -> Sequence[int]:
    """Every x from `low` up to `high` with x·alpha − phase within `width` (and _SLACK) of a
    whole number, ascending, and perhaps a few more (callers check each).

    With p/q close to alpha (`fraction`: a convergent, q no more than the range, is best),
    x·alpha = (x·p + x·e)/q where e = q·alpha − p is small: x·p mod q (x's residue class)
    places x·alpha to within x·e/q, which drifts by less than 1/q over the range, so the
    classes near the phase are a run of residues, each class's x follows from one modular
    inverse, and within a class of many the drift allows one run of x. The cost goes with the
    number found, not the range (any p/q gives the same x, only slower)."""
    spread = width + _SLACK
    count = high - low
    if spread >= 0.5 or count <= 0:
        return range(low, high)
    p, q, inverse = fraction
    e = q * alpha - p
    shift = q * (phase - math.floor(phase))
    u1, u2 = low * e - shift, (high - 1) * e - shift  # x·e − q·phase over the range
    if e < 0:
        u1, u2 = u2, u1
    wide = q * spread
    if count <= 2 * q:  # classes of no more than two x: take them whole
        # The residues rho with rho + x·e − q·phase within wide of a multiple of q.
        first, last = math.ceil(-wide - u2), math.floor(wide - u1)
        if last - first + 1 >= q:
            rhos: Iterable[int] = range(q)
        elif first % q + last - first < q:
            rhos = range(first % q, first % q + last - first + 1)
        else:
            rhos = itertools.chain(range(first % q, q), range(last % q + 1))
        found = [low + (rho * inverse - low) % q for rho in rhos]
        if count > q:
            found += [x + q for x in found if x + q < high]
        else:
            found = [x for x in found if x < high]
        found.sort()
        return found
    runs = []  # of residues rho with rho + x·e − q·phase within q·(z ± spread), for some z
    for z in range(math.ceil(u1 / q - spread), math.floor(u2 / q + spread) + 2):
        first, last = max(0, math.ceil(q * z - wide - u2)), min(q - 1, math.floor(q * z + wide - u1))
        if first <= last:
            runs.append((z, first, last))
    if not e:  # no drift: whole classes
        found = [x for _, first, last in runs for rho in range(first, last + 1)
                 for x in range(low + (rho * inverse - low) % q, high, q)]  # fmt: skip
    else:  # of each class, the run of x whose drift keeps it within the window
        wobble = q * (abs(alpha) + 1) * 4e-16 / (e * e)  # how far e's rounding may move a bound
        found = []
        for z, first, last in runs:
            for rho in range(first, last + 1):  # x·e within q·(z ± spread) + q·phase − rho
                a, b = (q * z - wide + shift - rho) / e, (q * z + wide + shift - rho) / e
                if b < a:
                    a, b = b, a
                slack = 1 + wobble * (abs(a) + abs(b) + q) * abs(e)
                start, stop = max(low, math.ceil(a - slack)), min(high - 1, math.floor(b + slack))
                found.extend(range(start + (rho * inverse - start) % q, stop + 1, q))
    return sorted(set(found)) if len(runs) > 1 else sorted(found)


__all__ = ["TOLERANCE", "AxisPlan", "kept_axis", "plan_axis"]
