"""/animate on a model with sound, through the loopback Discord and the real bot: the member
gets an MP4 with an AAC track, Info says so, and `audio:False` gives a silent clip.

The worker loads the tiny LTX-2 checkpoint with the production loader; only the frame size is
forced down (the preset's 768×512 would take minutes through the tiny model's 2× VAE;
tests/small_frames.py). tests/test_bot_families.py renders it at its defaults with the
other families.
"""

# ruff: noqa: F811  (pytest fixtures imported from tiny_models are "redefined" as arguments)
from __future__ import annotations

from pathlib import Path

from loopback import Upload
from small_frames import factory
from tiny_models import tiny_ltx2_dir  # noqa: F401  (a session fixture)
from world import bot_world, has_video, private_text, small_png, video_of

from pipeline.audio import read_audio
from pipeline.probe import probe


async def test_animate_delivers_the_models_sound(tmp_path: Path, tiny_ltx2_dir: Path) -> None:
    async with bot_world(
        tmp_path, model=str(tiny_ltx2_dir), backend_factory=factory(), model_costs={},
        welcome_credits=50,
    ) as world:
        d = world.discord
        run = await d.slash(
            "animate",
            {"image": Upload(small_png(), "dog.png"), "prompt": "a dog barks", "duration": 2.0},
        )
        clip = await run.message(has_video, timeout=240)
        mp4 = video_of(clip)
        assert probe(mp4)["codec"] == "h264"
        sound = read_audio(mp4)
        assert sound is not None and abs(sound.seconds - 49 / 24) <= 1 / 24
        assert "Sound: made by the model" in await private_text(await d.click(clip, "Info"))

        silent = await d.slash(
            "animate",
            {"image": Upload(small_png(), "dog.png"), "duration": 2.0, "audio": False},
        )
        quiet = await silent.message(has_video, timeout=240)
        assert read_audio(video_of(quiet)) is None
