"""Encode while drawing: frames reach ffmpeg as they are drawn, not after the last one.

x264 is most of a CPU camera clip's time, so the drawing hides in its shadow when both run at
once. A drawer hands the sink either frames (yuv420p, half the bytes of RGB), which are kept so
a byte limit's second attempt encodes them again without redrawing, or one :class:`Drawn`: a
still and the ffmpeg filters that draw every frame from it (the camera move), so nothing is
drawn in Python and each attempt draws the clip again inside ffmpeg.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, overload

from pipeline.encode import EncodedVideo, encode_mp4

Frame = bytes | bytearray | memoryview
"""One yuv420p frame: its Y, U and V planes back to back."""


@dataclass(frozen=True)
class Drawn:
    """A clip ffmpeg draws itself: `count` yuv420p frames of width × height, made by `filters`
    (an ffmpeg filter chain) from one yuv420p `still` of `size` (BT.709, tv range).

    :func:`pipeline.encode.encode_mp4` takes it as it takes frames: only the still is piped,
    and the filters run before the encode's own scaling."""

    width: int
    height: int
    count: int
    size: tuple[int, int]
    still: bytes | memoryview
    filters: str
    should_stop: Callable[[], bool] = field(default=lambda: False, compare=False)
    """Checked while ffmpeg draws and encodes: True stops it (Cancelled)."""
    pix_fmt: ClassVar[str] = "yuv420p"

    def __len__(self) -> int:
        return self.count


class Sink(Protocol):
    """Where a drawer puts a clip: frame after frame in order, or all of it at once as a
    :class:`Drawn` (`drawn`, only on sinks that have it; a plain callable takes frames)."""

    def __call__(self, frame: Frame) -> None: ...


class Yuv420Frames(Sequence[Frame]):
    """A clip's yuv420p frames (flat Y, U, V planes, BT.709 tv range) of a known count, filled
    by one drawing thread while others read: reading a frame not drawn yet waits for it."""

    pix_fmt = "yuv420p"

    def __init__(self, width: int, height: int, count: int) -> None:
        self.width, self.height, self.count = width, height, count
        self._frames: list[Frame] = []
        self._error: BaseException | None = None
        self._ready = threading.Condition()
        self.finished: float | None = None
        """perf_counter() when the last frame came in (or the whole clip, as a Drawn)."""

    def put(self, frame: Frame) -> None:
        if len(frame) != self.width * self.height * 3 // 2:
            raise ValueError(f"a {self.width}x{self.height} yuv420p frame is not {len(frame)} bytes")
        with self._ready:
            if self._error is not None:  # the encoder gave up: stop drawing
                raise self._error
            if len(self._frames) >= self.count:
                raise ValueError(f"more than {self.count} frames")
            self._frames.append(frame)
            if len(self._frames) == self.count:
                self.finished = time.perf_counter()
            self._ready.notify_all()

    def fail(self, error: BaseException) -> None:
        """No more frames will come: readers waiting (and the drawer's next put) raise `error`."""
        with self._ready:
            if self._error is None:
                self._error = error
            self._ready.notify_all()

    def __len__(self) -> int:
        return self.count

    @overload
    def __getitem__(self, index: int) -> Frame: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Frame]: ...
    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self.count))]
        if index < 0:
            index += self.count
        if not 0 <= index < self.count:
            raise IndexError(index)
        with self._ready:
            while len(self._frames) <= index:
                if self._error is not None:
                    raise self._error
                self._ready.wait()
            return self._frames[index]

    def __iter__(self) -> Iterator[Frame]:
        for index in range(self.count):
            yield self[index]


class _Encoder:
    """The sink :func:`encode_while_drawing` hands the drawer: the first frame starts the
    encode on a thread, beside the drawing; a Drawn is encoded once the drawer returns."""

    def __init__(self, frames: Yuv420Frames, fps: float, encode: dict[str, Any]) -> None:
        self.frames, self.fps, self.encode = frames, fps, encode
        self.thread: threading.Thread | None = None
        self.result: dict[str, Any] = {}
        self.whole: Drawn | None = None

    def __call__(self, frame: Frame) -> None:
        if self.whole is not None:
            raise ValueError("frames after a whole drawn clip")
        if self.thread is None:
            self.thread = threading.Thread(target=self._run, name="encode", daemon=True)
            self.thread.start()
        self.frames.put(frame)

    def drawn(self, clip: Drawn) -> None:
        if self.thread is not None or self.whole is not None:
            raise ValueError("a whole drawn clip after other frames")
        planned = (self.frames.width, self.frames.height, self.frames.count)
        if (clip.width, clip.height, clip.count) != planned:
            raise ValueError(
                f"a drawn clip of {clip.count} {clip.width}x{clip.height} frames is not the "
                f"{self.frames.count} {self.frames.width}x{self.frames.height} frames planned"
            )
        self.whole = clip
        self.frames.finished = time.perf_counter()

    def _run(self) -> None:
        try:
            self.result["video"] = encode_mp4(self.frames, self.fps, **self.encode)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            self.result["error"] = exc
            self.frames.fail(exc)


def encode_while_drawing(
    draw: Callable[[Sink], None], frames: Yuv420Frames, fps: float, **encode: Any
) -> EncodedVideo:
    """Run `draw(sink)` here while :func:`encode_mp4` encodes `frames` on a thread, or encode
    the :class:`Drawn` clip the drawer handed over instead (`sink.drawn`).

    The drawing stays on the caller's thread, so its progress events and cancel checks run
    where they always do. An error on either side ends both: a failed draw (or Cancelled)
    stops ffmpeg, a failed encode stops the drawing at its next frame.
    """
    sink = _Encoder(frames, fps, encode)
    try:
        draw(sink)
        if sink.whole is None and len(frames._frames) != frames.count:
            raise RuntimeError(f"drew {len(frames._frames)} of {frames.count} frames")
    except BaseException as exc:
        frames.fail(exc)
        if sink.thread is not None:
            sink.thread.join()
        if "error" in sink.result and sink.result["error"] is not exc:
            raise sink.result["error"] from None
        raise
    if sink.whole is not None:
        return encode_mp4(sink.whole, fps, **encode)  # type: ignore[arg-type]
    assert sink.thread is not None
    sink.thread.join()
    if "error" in sink.result:
        raise sink.result["error"]
    return sink.result["video"]


__all__ = ["Drawn", "Frame", "Sink", "Yuv420Frames", "encode_while_drawing"]
