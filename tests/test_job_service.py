"""What members can do with jobs, specified against JobService with a real SQLite file.

No Discord and no Ray: the dispatcher is built but not started, so jobs stay queued (or are
moved along by the store, as a worker would) and every rule of the service is visible."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from contract import InputError, JobSpec
from jobs import (
    ClipSummary,
    CreditPolicy,
    Dispatcher,
    DurationNotOffered,
    InsufficientCredits,
    JobAction,
    JobsConfig,
    JobService,
    JobStatus,
    ModelUnavailable,
    NotFinished,
    NotSupported,
    Origin,
    Pricing,
    Store,
    TooManyQueued,
    UnknownJob,
)

pytestmark = pytest.mark.asyncio

OWNER, PRESSER = 1, 2
WELCOME = 30


def _never_spawned(*args: object, **kwargs: object) -> None:
    raise AssertionError("a spec must not start workers")


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[JobService]:
    config = JobsConfig(
        models=("camera", "ltx"),
        output_dir=tmp_path / "out",
        pricing=Pricing(per_second={"camera": 1.0, "ltx": 4.0}),
        max_queued_per_user=5,
    )
    store = await Store.open(tmp_path / "jobs.sqlite3", CreditPolicy(welcome=WELCOME))
    dispatcher = Dispatcher(config, store, spawn=_never_spawned)
    yield JobService(store, dispatcher, config)
    await store.close()


async def submit(service: JobService, user: int = OWNER, key: str | None = None, **fields: object) -> object:
    spec = service.spec(**fields)  # type: ignore[arg-type]
    return await service.submit(spec, Origin(user_id=user, key=key), image=b"photo", end_image=None)


async def finish(service: JobService, job_id: int, tmp_path: Path) -> None:
    """Do what a worker and the runner do: claim, render, keep the MP4."""
    store = service.store
    assert (await store.claim(job_id, "w")) is not None
    clip = tmp_path / f"{job_id}.mp4"
    clip.write_bytes(b"mp4")
    summary = ClipSummary(width=64, height=48, frames=48, fps=24.0, seed=7, model="camera")
    assert await store.finish(job_id, result_path=str(clip), clip=summary) is not None


async def test_submit_validates_once_prices_and_charges_the_presser(service: JobService) -> None:
    job = await submit(service, model="camera", duration=3.0, prompt="waves", key="i-1")
    assert job.status is JobStatus.QUEUED and job.action is JobAction.ANIMATE
    assert job.spec == JobSpec(model="camera", duration=3.0, prompt="waves")
    assert job.cost == 3 and await service.store.balance(OWNER) == WELCOME - 3
    again = await submit(service, model="camera", duration=3.0, prompt="waves", key="i-1")
    assert again.id == job.id and await service.store.balance(OWNER) == WELCOME - 3
    # The default model and length come from the catalogue.
    default = await submit(service)
    assert (default.model, default.spec.duration) == ("camera", 3.0)


async def test_refusals_charge_nothing(service: JobService) -> None:
    with pytest.raises(ModelUnavailable, match="`sora` isn't available here; choose one of: camera, ltx"):
        service.spec(model="sora")
    with pytest.raises(DurationNotOffered, match="makes clips of 2, 3, 5, 8 seconds"):
        service.spec(model="camera", duration=4.0)
    with pytest.raises(NotSupported, match="can't end on a chosen image"):
        service.spec(model="camera", end_image=True)
    assert service.spec(model="ltx", end_image=True).model == "ltx"
    with pytest.raises(InputError, match="Motion strength"):
        service.spec(model="camera", motion=11)
    # What Discord's client enforces is checked again: a forged interaction can send anything.
    with pytest.raises(InputError, match="at most 1000 characters"):
        service.spec(model="camera", prompt="x" * 6000)
    with pytest.raises(InputError, match="seed must be a whole number from 0 to 4294967295"):
        service.spec(model="camera", seed=2**70)
    with pytest.raises(InsufficientCredits) as refused:
        await submit(service, user=OWNER, model="ltx", duration=8.0)
    assert (refused.value.cost, refused.value.balance) == (32, WELCOME)
    with pytest.raises(InsufficientCredits):
        await submit(service, user=OWNER, model="ltx", duration=8.0)
    assert await service.store.balance(OWNER) == WELCOME
    assert await service.store.jobs(user_id=OWNER) == []


async def test_reroll_keeps_the_settings_with_a_new_seed_and_the_presser_pays(service: JobService) -> None:
    original = await submit(service, model="camera", duration=2.0, prompt="cat", camera="orbit", seed=5)
    owner_after = await service.store.balance(OWNER)
    reroll = await service.reroll(original.id, Origin(user_id=PRESSER, key="click-1", max_bytes=8 << 20))
    assert (reroll.action, reroll.parent_id, reroll.user_id) == (JobAction.REROLL, original.id, PRESSER)
    assert reroll.spec.replace(seed=5, max_bytes=None) == original.spec
    assert reroll.spec.seed != 5 and reroll.spec.max_bytes == 8 << 20
    assert await service.store.job_inputs(reroll.id) == (b"photo", None)
    assert await service.store.balance(OWNER) == owner_after
    assert await service.store.balance(PRESSER) == WELCOME - reroll.cost
    # A double click is one job, charged once.
    again = await service.reroll(original.id, Origin(user_id=PRESSER, key="click-1"))
    assert again.id == reroll.id and await service.store.balance(PRESSER) == WELCOME - reroll.cost


async def test_edit_changes_what_was_asked_and_the_presser_pays(service: JobService) -> None:
    original = await submit(service, model="camera", duration=2.0, prompt="cat", seed=5)
    edited = await service.edit(
        original.id, Origin(user_id=PRESSER), prompt="dog", camera="pan_left", motion=3
    )
    assert (edited.action, edited.parent_id) == (JobAction.EDIT, original.id)
    assert (edited.spec.prompt, edited.spec.camera, edited.spec.motion) == ("dog", "pan_left", 3)
    assert edited.spec.seed is None and edited.spec.duration == 2.0
    assert await service.store.balance(PRESSER) == WELCOME - edited.cost
    with pytest.raises(InputError, match="camera move"):
        await service.edit(original.id, Origin(user_id=PRESSER), camera="sideways")
    assert await service.store.balance(PRESSER) == WELCOME - edited.cost


async def test_only_a_finished_clip_can_be_extended(service: JobService, tmp_path: Path) -> None:
    original = await submit(service, model="camera", duration=2.0)
    with pytest.raises(NotFinished):
        await service.extend(original.id, Origin(user_id=PRESSER))
    assert await service.store.balance(PRESSER) == WELCOME
    await finish(service, original.id, tmp_path)
    extension = await service.extend(original.id, Origin(user_id=PRESSER))
    assert (extension.action, extension.parent_id) == (JobAction.EXTEND, original.id)
    assert await service.store.job_inputs(extension.id) == (b"photo", None)
    assert await service.store.balance(PRESSER) == WELCOME - extension.cost


def offer(service: JobService, *models: str) -> None:
    """The operator changed MODEL and restarted."""
    service.config = dataclasses.replace(service.config, models=models)
    service.dispatcher.config = service.config


async def test_a_follow_up_of_a_model_no_longer_offered_uses_the_default(
    service: JobService, tmp_path: Path
) -> None:
    original = await submit(service, model="ltx", duration=2.0)
    offer(service, "camera")
    reroll = await service.reroll(original.id, Origin(user_id=OWNER))
    assert reroll.model == "camera"
    # ...and a length it offers, or a refusal that says which.
    long = await submit(service, model="camera", duration=8.0)
    offer(service, "wan")
    with pytest.raises(DurationNotOffered, match="`wan` makes clips of 2, 3, 5 seconds"):
        await service.edit(long.id, Origin(user_id=OWNER), prompt="x")
    assert (await service.edit(original.id, Origin(user_id=OWNER), prompt="x")).model == "wan"


async def test_cancel_refunds_once_and_says_why_not_otherwise(
    service: JobService, tmp_path: Path
) -> None:
    job = await submit(service, model="camera", duration=5.0)
    assert await service.store.balance(OWNER) == WELCOME - 5
    cancelled, now = await service.cancel(job.id)
    assert cancelled and now.status is JobStatus.CANCELLED
    assert await service.store.balance(OWNER) == WELCOME
    cancelled, now = await service.cancel(job.id)
    assert not cancelled and now.status is JobStatus.CANCELLED
    assert await service.store.balance(OWNER) == WELCOME
    done = await submit(service, model="camera", duration=2.0)
    await finish(service, done.id, tmp_path)
    cancelled, now = await service.cancel(done.id)
    assert not cancelled and now.status is JobStatus.DONE
    assert await service.store.balance(OWNER) == WELCOME - 2


async def test_positions_follow_the_fair_order(service: JobService) -> None:
    a1 = await submit(service, user=OWNER)
    a2 = await submit(service, user=OWNER)
    b1 = await submit(service, user=PRESSER)
    assert [await service.position(j.id) for j in (a1, b1, a2)] == [1, 2, 3]
    await service.cancel(a1.id)
    assert await service.position(a1.id) is None
    assert [await service.position(j.id) for j in (a2, b1)] == [1, 2]


async def test_recovery_puts_back_what_a_stopped_process_left(
    service: JobService, tmp_path: Path
) -> None:
    """max_attempts is 2: a job that dies with the process once runs again; twice, it ends
    refunded; a finished clip never posted is reported for delivery."""
    store = service.store
    again = await submit(service, model="camera", duration=2.0)
    spent = await submit(service, model="camera", duration=3.0)
    posted_never = await submit(service, model="camera", duration=2.0)
    await finish(service, posted_never.id, tmp_path)
    for job in (again, spent):
        assert await store.claim(job.id, "w") is not None  # rendering when the process died
    first = await service.recover()
    assert [j.id for j in first.requeued] == [again.id, spent.id] and first.failed == []
    assert [j.id for j in first.undelivered] == [posted_never.id]
    assert await store.claim(spent.id, "w") is not None  # its second attempt dies too
    second = await service.recover()
    assert [j.id for j in second.failed] == [spent.id] and second.requeued == []
    ended = await store.get_job(spent.id)
    assert ended.status is JobStatus.FAILED and "retries ran out" in (ended.error or "")
    assert (await store.get_job(again.id)).status is JobStatus.QUEUED
    assert await store.balance(OWNER) == WELCOME - 2 - 2  # the spent job was refunded


async def test_room_is_checked_before_the_photo_costs_anything(service: JobService) -> None:
    with pytest.raises(InsufficientCredits):
        await service.check_room(OWNER, service.spec(model="ltx", duration=8.0))
    await service.check_room(OWNER, service.spec(model="camera"))
    for _ in range(5):
        await submit(service, user=PRESSER)
    with pytest.raises(TooManyQueued):
        await service.check_room(PRESSER, service.spec())
    assert await service.store.balance(OWNER) == WELCOME  # checking charged nothing


async def test_delete_forgets_the_photo_prompt_token_and_clip(
    service: JobService, tmp_path: Path
) -> None:
    spec = service.spec(model="camera", duration=2.0, prompt="my secret garden")
    job = await service.submit(spec, Origin(user_id=OWNER, delivery={"token": "t0k"}), image=b"photo")
    await finish(service, job.id, tmp_path)
    await service.delete(job.id)
    gone = await service.store.get_job(job.id)
    assert gone.spec.prompt == "" and dict(gone.delivery) == {} and gone.result_path is None
    assert not (tmp_path / f"{job.id}.mp4").exists()
    with pytest.raises(UnknownJob):
        await service.store.job_inputs(job.id)
    with pytest.raises(UnknownJob):  # its buttons elsewhere say the video no longer exists
        await service.reroll(job.id, Origin(user_id=PRESSER))
    assert await service.store.balance(PRESSER) == WELCOME
    # A job still waiting is cancelled (and refunded) before it is forgotten.
    waiting = await submit(service, model="camera", duration=3.0)
    await service.delete(waiting.id)
    assert (await service.store.get_job(waiting.id)).status is JobStatus.CANCELLED
    assert await service.store.balance(OWNER) == WELCOME - 2


async def test_an_extension_of_a_smoothed_clip_pays_for_its_new_seconds_only(
    service: JobService, tmp_path: Path
) -> None:
    """The new part takes the clip's rate and size; nothing smooths or upscales it again
    (pipeline.animate: FINISH_NOT_ON_EXTENSIONS), so nothing of that is charged or shown."""
    pricing = dataclasses.replace(
        service.config.pricing, finish_per_second={"smooth": 0.5, "upscale": 1.0}
    )
    service.config = dataclasses.replace(service.config, pricing=pricing)
    original = await submit(service, model="camera", duration=2.0, interpolate=2, upscale=2)
    await finish(service, original.id, tmp_path)
    plain = service.cost_of(service.spec(model="camera", duration=2.0))
    assert original.cost > plain
    extension = await service.extend(original.id, Origin(user_id=PRESSER))
    assert extension.spec.finishes == () and extension.cost == plain
    assert await service.store.balance(PRESSER) == WELCOME - plain


async def test_auto_is_judged_by_what_every_worker_makes_of_it(
    service: JobService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Takes of the camera move are refused when "auto" means the camera everywhere; in a
    fleet where a GPU worker's "auto" is a preset and a CPU worker's the camera, the job may
    go to either, so one worker's card must not refuse it."""
    from contract import WorkerInfo
    from jobs.refusals import NotSupported

    def worker(name: str, auto: str) -> WorkerInfo:
        return WorkerInfo(
            name=name, models=(auto,), aliases={"auto": auto}, label=name, device="cpu",
            device_name="cpu", node="n", node_id="n", pid=1,
        )  # fmt: skip

    cpu = worker("cpu-0", "camera")
    monkeypatch.setattr(type(service.dispatcher), "workers", property(lambda self: [cpu]))
    config = dataclasses.replace(service.config, models=("auto", "camera", "ltx"))
    service = JobService(service.store, service.dispatcher, config)
    with pytest.raises(NotSupported, match="takes would be identical"):
        service.spec(model="auto", variations=2)
    gpu = worker("gpu-0", "ltx")
    monkeypatch.setattr(type(service.dispatcher), "workers", property(lambda self: [cpu, gpu]))
    assert service.spec(model="auto", variations=2).variations == 2
    monkeypatch.setattr(type(service.dispatcher), "workers", property(lambda self: [gpu, cpu]))
    assert service.spec(model="auto", variations=2).variations == 2
