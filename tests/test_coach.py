"""The prompt coach: at most one hint, from plain word rules, for the advice members read
(one dominant motion, under ~30 words, motion not scene, slow not extreme, one camera move)."""

from __future__ import annotations

import pytest

from bot.coach import MAX_WORDS, TEMPLATES, hint, motions_in, templates_for

TABLE = [
    # prompt, camera, the hint starts with (None: no hint)
    ("her hair moves in a light breeze, slow push-in", "zoom_in", None),
    ("her hair moves in a light breeze, slow push-in", "static", None),  # static is a push-in
    ("the cat blinks slowly", "static", None),
    ("", "orbit", None),
    ("slow zoom out, the city lights flicker", "zoom_in", "Your prompt asks for “zoom out” but the camera option is “zoom in”"),
    ("waves roll in, camera pans to the left", "pan_right", "Your prompt asks for “pan left”"),
    ("a beautiful woman in a red dress standing in a garden at sunset", "static", "Describe the motion, not the scene"),
    ("the dog runs, jumps over the fence and then rolls in the grass", "static", "One dominant motion works best"),
    ("the car explodes into flames", "static", "Fast or extreme motion (“explodes”)"),
    ("the horse gallops quickly", "static", "Fast or extreme motion (“quickly”)"),
    (" ".join(["slowly"] * MAX_WORDS) + " she smiles", "static", f"Short prompts move better: this one has {MAX_WORDS + 2} words"),
]


@pytest.mark.parametrize(("prompt", "camera", "starts"), TABLE)
def test_one_hint_per_prompt(prompt: str, camera: str, starts: str | None) -> None:
    said = hint(prompt, camera)
    if starts is None:
        assert said is None
    else:
        assert said is not None and said.startswith(starts), said
        assert "\n" not in said and len(said) < 200


def test_motion_words_are_found_in_any_form() -> None:
    assert motions_in("She is smiling while the leaves flutter and the dog runs") == ["smile", "flutter", "run"]


@pytest.mark.parametrize(("label", "text"), TEMPLATES)
def test_each_template_follows_its_own_advice_with_its_camera(label: str, text: str) -> None:
    """A member who picks a template and the camera move it names gets no hint."""
    from bot.coach import cameras_in

    camera = (cameras_in(text) or ["static"])[0]
    assert hint(text, camera) is None, (label, hint(text, camera))
    assert len(text) <= 100 and len(text.split()) <= MAX_WORDS


def test_templates_are_found_by_subject() -> None:
    assert [label for label, _ in templates_for("pet")] == ["Pet"]
    assert len(templates_for("")) == len(TEMPLATES) <= 25
