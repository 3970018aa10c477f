"""A clip's sound: what a model with audio made, fitted to the frames it belongs to.

LTX-2 makes its sound with the picture; the orchestrator cuts, loops and joins the frames
(crossfade loops, extensions), so the sound goes through the same cuts here, at sample
precision, and the MP4 gets one track exactly as long as the video. Plain numpy; reading a
previous clip's track back uses PyAV, like the frames.
"""

from __future__ import annotations

import io
import logging
import math
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class Soundtrack:
    """float32 samples shaped (channels, n) in [-1, 1], at `rate` samples per second."""

    samples: np.ndarray
    rate: int

    def __post_init__(self) -> None:
        if self.samples.ndim != 2 or self.samples.shape[0] not in (1, 2):
            raise ValueError(f"audio must be (1 or 2 channels, n), got {self.samples.shape}")
        if self.rate <= 0:
            raise ValueError(f"sample rate must be positive, got {self.rate}")

    @classmethod
    def of(cls, samples: object, rate: int) -> Soundtrack:
        """From a model's output: a torch tensor or array, (n,), (channels, n) or (1, channels, n)."""
        array = samples.detach().float().cpu().numpy() if hasattr(samples, "detach") else samples
        array = np.asarray(array, dtype=np.float32)
        while array.ndim > 2 and array.shape[0] == 1:
            array = array[0]
        if array.ndim == 1:
            array = array[None, :]
        clean = np.nan_to_num(array[:2], nan=0.0, posinf=1.0, neginf=-1.0)
        return cls(np.ascontiguousarray(np.clip(clean, -1.0, 1.0)), int(rate))

    @classmethod
    def silence(cls, seconds: float, rate: int, channels: int = 2) -> Soundtrack:
        return cls(np.zeros((channels, max(0, round(seconds * rate))), np.float32), rate)

    @property
    def channels(self) -> int:
        return int(self.samples.shape[0])

    @property
    def seconds(self) -> float:
        return self.samples.shape[1] / self.rate

    def at(self, seconds: float) -> int:
        """The sample index at `seconds`."""
        return round(seconds * self.rate)

    def fitted(self, seconds: float) -> Soundtrack:
        """Exactly `seconds` long: cut, or padded with silence (a vocoder's output is a few
        milliseconds shorter or longer than the frames it was made with)."""
        want = self.at(seconds)
        have = self.samples.shape[1]
        if have >= want:
            return Soundtrack(self.samples[:, :want], self.rate)
        pad = np.zeros((self.channels, want - have), np.float32)
        return Soundtrack(np.concatenate([self.samples, pad], axis=1), self.rate)

    def slice(self, start: float, end: float | None = None) -> Soundtrack:
        stop = None if end is None else self.at(end)
        return Soundtrack(self.samples[:, self.at(start) : stop], self.rate)

    def then(self, other: Soundtrack) -> Soundtrack:
        """This track followed by `other`, at the same rate and channel count (read_audio
        brings a previous clip's track to them)."""
        if (other.rate, other.channels) != (self.rate, self.channels):
            raise ValueError(
                f"cannot join {other.channels} ch at {other.rate} Hz to {self.channels} ch at {self.rate} Hz"
            )
        return Soundtrack(np.concatenate([self.samples, other.samples], axis=1), self.rate)

    def wav(self) -> bytes:
        """16-bit PCM WAV: what ffmpeg reads as the second input of the encode."""
        pcm = np.rint(self.samples.T * 32767.0).clip(-32768, 32767).astype("<i2")
        buffer = io.BytesIO()
        with wave.open(buffer, "wb") as out:
            out.setnchannels(self.channels)
            out.setsampwidth(2)
            out.setframerate(self.rate)
            out.writeframes(pcm.tobytes())
        return buffer.getvalue()

    def write_wav(self, path: Path) -> Path:
        path.write_bytes(self.wav())
        return path


def crossfade_loop_audio(audio: Soundtrack, fps: float, frames: int, fade: int) -> Soundtrack:
    """The sound of :func:`pipeline.loops.crossfade_loop`: from frame `fade` on, the last
    `fade` frames' sound dissolving into the first `fade` frames' sound, so the loop's seam is
    as seamless to the ear as to the eye."""
    n = frames
    if n < 3 or fade < 1:
        return audio.fitted(n / fps)
    fade = min(fade, n // 3)
    audio = audio.fitted(n / fps)
    a, b, c = audio.at(fade / fps), audio.at((n - fade) / fps), audio.samples.shape[1]
    tail = audio.samples[:, b:c]
    head = audio.samples[:, : c - b]
    # Equal-power: two uncorrelated sounds crossfaded linearly dip by 3 dB in the middle.
    t = (np.arange(1, tail.shape[1] + 1, dtype=np.float32) / max(1, tail.shape[1]))[None, :]
    blended = tail * np.cos(t * math.pi / 2) + head * np.sin(t * math.pi / 2)
    return Soundtrack(np.concatenate([audio.samples[:, a:b], blended], axis=1), audio.rate)


def read_audio(mp4: bytes, *, rate: int | None = None, channels: int | None = None) -> Soundtrack | None:
    """The sound track of an MP4 as float32 samples (None when it has none): an extension keeps
    the sound of the clip it continues. `rate` / `channels`: resampled to these by FFmpeg's
    resampler (to join the new part's track); None: as stored."""
    import av

    try:
        with av.open(io.BytesIO(mp4)) as container:
            if not container.streams.audio:
                return None
            stream = container.streams.audio[0]
            rate = rate or int(stream.codec_context.sample_rate or stream.rate or 0)
            # The header's duration excludes AAC's padding of the last frame; decoding does not.
            length = (
                round(float(stream.duration * stream.time_base) * rate)
                if stream.duration and stream.time_base
                else None
            )
            channels = channels or min(2, int(stream.codec_context.channels or 1))
            layout = "stereo" if channels == 2 else "mono"
            resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate)
            chunks: list[np.ndarray] = []
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray())
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray())
    except Exception as exc:  # noqa: BLE001 - av raises many types on bad data
        log.warning("could not read the previous clip's sound (%r); extending without it", exc)
        return None
    if not chunks or rate <= 0:
        return None
    samples = np.concatenate(chunks, axis=1).astype(np.float32)
    return Soundtrack(samples[:, :length] if length else samples, rate)
