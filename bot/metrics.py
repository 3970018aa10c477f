"""Prometheus metrics for operators (``GET /metrics`` beside ``/healthz``).

Job and credit totals are counted from the SQLite queue of record at each scrape, so they
survive restarts; timings, deliveries and shrinks are observed live since the bot started;
gateway latency, event-loop lag and workers are read as they are now.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from contract import AnimateResult, Event, Takes
from jobs import ACTIVE, Job, Tallies

if TYPE_CHECKING:
    from bot.app import AnimateBot

SECONDS_BUCKETS = (1, 2, 5, 10, 20, 30, 60, 90, 120, 180, 300, 600, 900, 1800)


class BotMetrics(Collector):
    """One registry per bot (several bots may share a test process)."""

    def __init__(self, bot: AnimateBot) -> None:
        self.bot = bot
        self.registry = CollectorRegistry(auto_describe=False)
        self.wait_seconds = Histogram(
            "animate_job_wait_seconds", "Seconds a job waited in the queue before it rendered",
            ["model"], buckets=SECONDS_BUCKETS, registry=self.registry,
        )
        self.render_seconds = Histogram(
            "animate_job_render_seconds", "Seconds a job took to render (photo to MP4)",
            ["model"], buckets=SECONDS_BUCKETS, registry=self.registry,
        )
        self.registry.register(self)
        self._tallies = Tallies(jobs={}, credits={})

    def on_event(self, job: Job, event: Event) -> None:
        """A dispatcher listener: a finished render's timings."""
        if isinstance(event, AnimateResult):
            if job.started_at is not None:
                self.wait_seconds.labels(job.model).observe(max(0.0, job.started_at - job.created_at))
            self.render_seconds.labels(job.model).observe(event.timings.get("total", 0.0))
        elif isinstance(event, Takes):
            if job.started_at is not None:
                self.wait_seconds.labels(job.model).observe(max(0.0, job.started_at - job.created_at))
            total = sum(made.timings.get("total", 0.0) for _, made in event.made)
            self.render_seconds.labels(job.model).observe(total)

    async def render(self) -> bytes:
        """The exposition text, with the database's counts read first (off the collector,
        which Prometheus' client calls synchronously)."""
        self._tallies = await self.bot.store.tallies()
        return generate_latest(self.registry)

    def collect(self) -> Iterator[Metric]:
        tallies = self._tallies
        depth = GaugeMetricFamily("animate_jobs_active", "Jobs waiting or rendering", labels=["model", "status"])
        finished = CounterMetricFamily("animate_jobs_finished", "Jobs ended, by outcome", labels=["model", "outcome"])
        active = sorted(str(s) for s in ACTIVE)
        models = sorted(set(self.bot.settings.models) | {model for model, _ in tallies.jobs})
        for model in models:  # an empty queue is 0, not a missing series
            for status in active:
                depth.add_metric([model, status], tallies.jobs.get((model, status), 0))
        for (model, status), n in sorted(tallies.jobs.items()):
            if status not in active and status != "done":  # done: made, not yet delivered
                finished.add_metric([model, status], n)
        yield depth
        yield finished
        failed = CounterMetricFamily(
            "animate_jobs_failed", "Jobs that failed (refunded), by model and kind", labels=["model", "kind"]
        )
        for (model, kind), n in sorted(tallies.failures.items()):
            failed.add_metric([model, kind], n)
        yield failed
        credits = CounterMetricFamily("animate_credits", "Credits moved, by ledger kind", labels=["kind"])
        for kind, n in sorted(tallies.credits.items()):
            credits.add_metric([kind], n)
        yield credits

        clips = self.bot.delivery.clips
        delivered = CounterMetricFamily(
            "animate_deliveries", "Clips posted since start, by route", labels=["route"]
        )
        for route, n in sorted(clips.delivered.items()):
            delivered.add_metric([route], n)
        yield delivered
        yield CounterMetricFamily(
            "animate_upload_shrinks", "Re-encodes after Discord found a clip too large, since start",
            value=clips.shrinks,
        )

        latency = self.bot.latency
        yield GaugeMetricFamily(
            "animate_gateway_latency_seconds", "Discord gateway heartbeat latency",
            value=latency if latency == latency and latency != float("inf") else -1,
        )
        watch = self.bot.loop_watch
        yield GaugeMetricFamily("animate_event_loop_lag_p99_seconds", "Event-loop lag, p99 since start", value=watch.percentile(0.99))
        yield CounterMetricFamily("animate_event_loop_stalls", "Event-loop stalls over the threshold", value=watch.stalls)
        workers = GaugeMetricFamily("animate_workers", "Render workers by state", labels=["state"])
        states: Counter[str] = Counter(w.state for w in self.bot.jobs.dispatcher.pool.workers)
        for state in ("starting", "ready", "restarting", "retiring"):
            workers.add_metric([state], states.get(state, 0))
        yield workers
        busy = CounterMetricFamily(
            "animate_worker_busy_seconds",
            "Seconds each worker had a job since start; rate() is its busy fraction",
            labels=["worker", "device"],
        )
        for (name, device), seconds in sorted(self.bot.jobs.dispatcher.runner.busy.seconds().items()):
            busy.add_metric([name, device], seconds)
        yield busy

    def describe(self) -> list[Any]:
        """Nothing up front: registering must not call collect(), which reads the bot."""
        return []
