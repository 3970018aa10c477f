"""``python -m pipeline animate --variations N``: N takes on the loaded model, seeds seed,
seed+1, ..., written as out.mp4, out-2.mp4, ...; bad values are one line and exit 2.

A tiny random-weight LTX model, loaded by the production loader; the MP4s are read back by a
real decoder (PyAV).
"""

# ruff: noqa: F811  (pytest fixtures imported from tiny_models are "redefined" as arguments)
from __future__ import annotations

import dataclasses
from pathlib import Path

import av
import numpy as np
import pytest
from test_cli import photo_path  # noqa: E402,F401  (a module fixture: the same photo)
from tiny_models import tiny_ltx_dir  # noqa: E402,F401  (a session fixture)

from contract import (  # noqa: E402
    AnimateRequest,
    Cancelled,
    Failed,
    InputError,
    ModelError,
    OutOfMemory,
    Takes,
)
from pipeline.backends.camera import CameraBackend  # noqa: E402
from pipeline.cli import main  # noqa: E402
from pipeline.probe import probe  # noqa: E402
from pipeline.takes import animate_takes  # noqa: E402

FAST = ["--size", "64x64", "--steps", "2", "--duration", "1", "--fps", "8", "--seed", "7"]


@pytest.fixture(scope="module")
def photo(photo_path: Path) -> Path:
    return photo_path


def frames(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def has_seed(path: Path, seed: int) -> bool:
    metadata = probe(path)["metadata"]
    return metadata.get("seed") == str(seed) or f"seed={seed}" in metadata.get("comment", "")


def test_two_takes_write_two_files_with_consecutive_seeds(
    tiny_ltx_dir: Path, photo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "clip.mp4"
    code = main(
        ["animate", str(photo), "--model", str(tiny_ltx_dir), *FAST, "--variations", "2",
         "--out", str(out), "--quiet"]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    second = tmp_path / "clip-2.mp4"
    assert captured.out.split() == [str(out), str(second)]
    a, b = frames(out), frames(second)
    assert a.shape == b.shape == (9, 64, 64, 3)
    assert np.abs(a.astype(int) - b.astype(int)).mean() > 1  # different seeds, different takes
    assert has_seed(out, 7) and has_seed(second, 8)


def test_help_names_the_files() -> None:
    from pipeline.cli_args import build_parser

    text = build_parser()._subparsers._group_actions[0].choices["animate"].format_help()  # type: ignore[union-attr]
    assert "--variations N" in text and "clip-2.mp4" in text


@pytest.mark.parametrize("bad", ["3", "0", "two"])
def test_bad_variations_are_one_line_and_exit_2(
    bad: str, photo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "clip.mp4"
    code = main(["animate", str(photo), "--model", "camera", "--variations", bad, "--out", str(out)])
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, captured.err
    assert f"variations must be 1, 2 or 4 takes, not '{bad}'" in lines[0]
    assert not out.exists() and captured.out == ""


def test_takes_of_the_camera_move_are_refused_in_one_line_with_exit_2(
    photo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The camera move draws the same clip for every seed: N takes would be N copies."""
    out = tmp_path / "clip.mp4"
    code = main(
        ["animate", str(photo), "--model", "camera", "--duration", "1", "--variations", "2",
         "--out", str(out)]
    )
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, captured.err
    assert lines[0].endswith(
        "The camera move draws the same clip every time, so takes would be identical: pick an "
        "AI model for variations, or ask for 1 take."
    ), lines[0]
    assert captured.out == "" and list(tmp_path.iterdir()) == []
    # One take of it is a clip as before.
    assert main(["animate", str(photo), "--model", "camera", "--duration", "1", "--variations",
                 "1", "--quiet", "--out", str(out)]) == 0
    assert out.is_file()


def test_a_backend_that_ignores_the_seed_refuses_takes_before_drawing_any(photo: Path) -> None:
    """Where the model is only known once loaded (``--model auto`` on a machine without a GPU,
    a worker): the backend's own declaration, before a frame is drawn."""
    drawn: list[int] = []

    class Camera(CameraBackend):
        render_yuv420 = None

        def render(self, image, plan, request, **kwargs):  # type: ignore[no-untyped-def]
            drawn.append(plan.seed)
            return super().render(image, plan, request, **kwargs)

    with pytest.raises(InputError, match="so takes would be identical: pick an AI model"):
        animate_takes(_request(photo, variations=2), Camera())
    assert drawn == []


class _Flaky(CameraBackend):
    """The camera move, except on the seeds in `fail`: `kind` says how that take fails. Its
    picture does not depend on the seed, but as a model's would, it declares that it does."""

    render_yuv420 = None
    """Not the camera's yuv420p fast path: this double changes the RGB frames render() draws."""
    info = dataclasses.replace(CameraBackend.info, uses_seed=True)

    def __init__(self, fail: dict[int, Exception]) -> None:
        super().__init__(workers=1)
        self.fail = fail

    def render(self, image, plan, request, **kwargs):  # type: ignore[no-untyped-def]
        if plan.seed in self.fail:
            raise self.fail[plan.seed]
        return super().render(image, plan, request, **kwargs)


def _request(photo: Path, **fields: object) -> AnimateRequest:
    return AnimateRequest(
        image=photo.read_bytes(), model="camera", duration=0.5, fps=8, width=64, height=64,
        seed=10, **fields,  # type: ignore[arg-type]
    )


def test_a_take_that_fails_alone_is_reported_and_the_others_are_made(photo: Path) -> None:
    seen: list[tuple[int, int]] = []
    result = animate_takes(
        _request(photo, variations=4), _Flaky({11: ModelError("gave up")}),
        emit=lambda p: seen.append((p.take, p.takes)),
    )
    assert isinstance(result, Takes)
    assert [n for n, _ in result.made] == [1, 3, 4] and [n for n, _ in result.failed] == [2]
    assert [r.seed for _, r in result.made] == [10, 12, 13]
    assert sorted(set(seen)) == [(1, 4), (2, 4), (3, 4), (4, 4)]


@pytest.mark.parametrize(
    "error", [OutOfMemory("out of memory"), Cancelled()], ids=["oom", "cancelled"]
)
def test_running_out_of_memory_or_a_cancel_ends_every_take(photo: Path, error: Exception) -> None:
    """Worth a retry (out of memory) or asked to stop: the job as a whole, not one take."""
    with pytest.raises(type(error)):
        animate_takes(_request(photo, variations=2), _Flaky({11: error}))


def test_every_take_failed_is_one_failure(photo: Path) -> None:
    result = animate_takes(
        _request(photo, variations=2), _Flaky({10: ModelError("no"), 11: ModelError("no")})
    )
    assert isinstance(result, Failed) and result.kind == "model"
