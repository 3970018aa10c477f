"""Operators' charts as a PNG: jobs per hour by outcome, render seconds by model, credits spent.

Drawn with matplotlib's object API on the Agg canvas (no pyplot, no display, no global
figure state) in a worker thread, so the event loop never waits on it, not even for the
import.
"""

from __future__ import annotations

import datetime as dt
import io
import threading

from jobs import OUTCOMES, Activity

COLOURS = {"delivered": "#3ba55d", "failed": "#ed4245", "cancelled": "#99aab5"}
SIZE_INCHES = (10.0, 9.0)
DPI = 100
_DRAWING = threading.Lock()  # matplotlib's font cache and text layout are not thread-safe


def summary(activity: Activity) -> str:
    """The chart's headline, also sent as the message text (readable without the image)."""
    parts = [f"{sum(activity.ended[o])} {o}" for o in OUTCOMES]
    return (
        f"{activity.total_ended} jobs ended ({', '.join(parts)}) · "
        f"{sum(activity.credits_spent)} credits spent"
    )


def draw(activity: Activity, title: str) -> bytes:
    """A PNG of `activity`, SIZE_INCHES × DPI pixels."""
    with _DRAWING:
        return _draw(activity, title)


def _draw(activity: Activity, title: str) -> bytes:
    # Imported here, in the drawing thread: matplotlib takes a quarter second to import, which
    # would block the event loop if the cog imported it at start-up.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
    from matplotlib.figure import Figure

    fig = Figure(figsize=SIZE_INCHES, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    fig.suptitle(f"{title}\n{summary(activity)}", fontsize=12)
    jobs_ax, render_ax, credits_ax = fig.subplots(3, 1)
    step = dt.timedelta(seconds=activity.bucket_seconds)
    start = dt.datetime.fromtimestamp(activity.since, tz=dt.timezone.utc)
    times = [start + i * step for i in range(activity.buckets)]
    width = step * 0.9
    locator = AutoDateLocator(tz=dt.timezone.utc)

    bottom = [0] * activity.buckets
    for outcome in OUTCOMES:
        counts = activity.ended[outcome]
        jobs_ax.bar(times, counts, width=width, bottom=bottom, align="edge",
                    color=COLOURS[outcome], label=outcome)
        bottom = [b + c for b, c in zip(bottom, counts)]
    jobs_ax.set_title(f"Jobs ended per {_per(activity.bucket_seconds)}, by outcome", loc="left")
    jobs_ax.legend(loc="lower right", bbox_to_anchor=(1, 1), ncols=len(OUTCOMES), frameon=False)
    jobs_ax.set_ylim(0, max(1, *bottom) * 1.05)

    models = sorted(activity.render_seconds)
    if models:
        render_ax.boxplot([activity.render_seconds[m] for m in models], vert=False,
                          tick_labels=[f"{m} ({len(activity.render_seconds[m])})" for m in models])
        render_ax.set_xlabel("seconds from start to finished clip")
    else:
        render_ax.set_xticks([])
        render_ax.set_yticks([])
        render_ax.text(0.5, 0.5, "no clips were made in this period", ha="center", va="center",
                       transform=render_ax.transAxes, color="grey")
    render_ax.set_title("Render seconds by model (clips made)", loc="left")

    spent = activity.credits_spent
    credits_ax.bar(times, spent, width=width, align="edge", color="#5865f2")
    credits_ax.set_ylim(min(0, *spent) * 1.05, max(1, *spent) * 1.05)  # refunds can outweigh
    credits_ax.set_title(f"Credits spent per {_per(activity.bucket_seconds)} (debits less refunds)", loc="left")
    for ax in (jobs_ax, credits_ax):
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(ConciseDateFormatter(locator, tz=dt.timezone.utc))
        ax.set_xlim(times[0], times[-1] + step)
        ax.set_xlabel("UTC")
        ax.grid(axis="y", alpha=0.3)
        ax.yaxis.get_major_locator().set_params(integer=True)

    out = io.BytesIO()
    fig.savefig(out, format="png")
    return out.getvalue()


def _per(seconds: float) -> str:
    hours = seconds / 3600
    return "hour" if hours == 1 else f"{hours:g} hours"
