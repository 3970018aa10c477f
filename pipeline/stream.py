"""Encode while drawing: frames reach ffmpeg as they are drawn, not after the last one.

x264 is most of a CPU camera clip's time, so the drawing hides in its shadow when both run at
once (the drawing releases the GIL in Pillow and swscale). The frames are kept, yuv420p (half
the bytes of RGB), so a byte limit's second attempt encodes them again without redrawing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, overload

from pipeline.encode import EncodedVideo, encode_mp4

Frame = bytes | bytearray | memoryview
"""One yuv420p frame: its Y, U and V planes back to back."""
Sink = Callable[[Frame], None]


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
        """perf_counter() when the last frame came in."""

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


def encode_while_drawing(
    draw: Callable[[Sink], None], frames: Yuv420Frames, fps: float, **encode: Any
) -> EncodedVideo:
    """Run `draw(sink)` here while :func:`encode_mp4` encodes `frames` on a thread.

    The drawing stays on the caller's thread, so its progress events and cancel checks run
    where they always do. An error on either side ends both: a failed draw (or Cancelled)
    stops ffmpeg, a failed encode stops the drawing at its next frame.
    """
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["video"] = encode_mp4(frames, fps, **encode)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            result["error"] = exc
            frames.fail(exc)

    encoder = threading.Thread(target=run, name="encode", daemon=True)
    encoder.start()
    try:
        draw(frames.put)
        if len(frames._frames) != frames.count:
            raise RuntimeError(f"drew {len(frames._frames)} of {frames.count} frames")
    except BaseException as exc:
        frames.fail(exc)
        encoder.join()
        if "error" in result and result["error"] is not exc:
            raise result["error"] from None
        raise
    encoder.join()
    if "error" in result:
        raise result["error"]
    return result["video"]


__all__ = ["Frame", "Sink", "Yuv420Frames", "encode_while_drawing"]
