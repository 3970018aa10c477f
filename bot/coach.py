"""A prompt coach: at most one short hint in the private acknowledgement, never a refusal.

The guides members read agree on what works for image-to-video: one dominant motion, under
about 30 words, the motion described rather than the scene, slow rather than extreme, and a
camera move named once. Everything here is deterministic word matching: no model, no cost.
"""

from __future__ import annotations

import re

from contract import CAMERA_LABELS

MAX_WORDS = 30

# Words that describe something moving (base forms; -s/-es/-ing/-ed are matched too).
_MOTION = frozenset(
    """
    move sway wave blow flow drift ripple flutter fall rise float swirl spin turn twist roll
    walk run jump dance fly swim ride drive climb nod blink smile laugh talk sing breathe look
    glance wink tilt pan zoom orbit push pull dolly track rotate shake tremble bounce splash
    pour melt burn flicker glow shimmer sparkle grow bloom open close lift raise lower reach
    wag chase play stretch yawn sip eat drink cry kiss hug bow stir wander stroll gallop
    crash explode burst race sprint rush whirl circle sweep slide glide creep sneak hover
    """.split()
)
_EXTREME = frozenset(
    """
    fast faster fastest quick quickly rapid rapidly explode explodes exploding explosion
    sprint sprints sprinting race races racing crash crashes crashing violent violently wild
    wildly frantic frantically chaotic extreme extremely spin spins spinning whirl whirling
    """.split()
)
_CAMERA_WORDS: tuple[tuple[str, str], ...] = (
    (r"\b(zoom(s|ing)? in|push(es|ing)?[- ]in|dolly(ing)? in)\b", "zoom_in"),
    (r"\b(zoom(s|ing)? out|pull(s|ing)? (back|out)|dolly(ing)? out)\b", "zoom_out"),
    (r"\bpan(s|ning)? (to the )?left\b", "pan_left"),
    (r"\bpan(s|ning)? (to the )?right\b", "pan_right"),
    (r"\btilt(s|ing)? up\b", "tilt_up"),
    (r"\btilt(s|ing)? down\b", "tilt_down"),
    (r"\b(orbit(s|ing)?|circl(e|es|ing) around)\b", "orbit"),
    (r"\b(static|still|locked[- ]off|fixed) camera\b", "static"),
)
_CAMERA_VERBS = frozenset({"pan", "zoom", "tilt", "orbit", "push", "pull", "dolly", "track"})
"""Camera words: the camera move, not one of the subject's motions."""
_SEPARATE = re.compile(r"\b(and then|then|while|, and|and also)\b|;")


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


def _base(word: str) -> str:
    for suffix in ("ing", "es", "ed", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            stem = word[: -len(suffix)]
            if stem in _MOTION:
                return stem
            if suffix == "ing" and stem + "e" in _MOTION:  # smiling -> smile
                return stem + "e"
            if len(stem) > 3 and stem[-1] == stem[-2] and stem[:-1] in _MOTION:  # running -> run
                return stem[:-1]
    return word


def motions_in(text: str) -> list[str]:
    """The motion words of `text`, in order, as base forms."""
    return [base for base in map(_base, _words(text)) if base in _MOTION]


def cameras_in(text: str) -> list[str]:
    lowered = text.lower()
    return [move for pattern, move in _CAMERA_WORDS if re.search(pattern, lowered)]


def hint(prompt: str, camera: str) -> str | None:
    """At most one hint for `prompt` with the chosen `camera` move, most useful first; None
    when the prompt already follows the advice (or is empty: the camera move speaks then)."""
    text = prompt.strip()
    if not text:
        return None
    named = cameras_in(text)
    # The static move is itself a barely perceptible push-in: a prompt's gentle push-in agrees.
    agrees = set(named) | ({"static"} if named == ["zoom_in"] else set())
    if named and camera not in agrees:
        said = CAMERA_LABELS[named[0]]
        return (
            f"Your prompt asks for “{said}” but the camera option is “{CAMERA_LABELS[camera]}”; "
            f"choose {said} as the camera next time so the two agree."
        )
    words = _words(text)
    if len(words) > MAX_WORDS:
        return (
            f"Short prompts move better: this one has {len(words)} words; describe one "
            f"motion in under {MAX_WORDS}."
        )
    motions = motions_in(text)
    if not motions and not named:
        return (
            "Describe the motion, not the scene, e.g. “her hair moves in a light breeze, "
            "slow push-in”: the photo already shows the scene."
        )
    distinct = list(dict.fromkeys(m for m in motions if m not in _CAMERA_VERBS))
    if len(distinct) >= 3 or (len(distinct) >= 2 and _SEPARATE.search(text.lower())):
        return (
            "One dominant motion works best; several at once tend to blur together "
            f"(here: {', '.join(distinct[:4])})."
        )
    extreme = sorted({w for w in words if w in _EXTREME})
    if extreme:
        return (
            f"Fast or extreme motion (“{extreme[0]}”) tends to warp faces and objects; "
            "slow, gentle motion looks best. Adding “static background” calms artifacts."
        )
    return None


TEMPLATES: tuple[tuple[str, str], ...] = (
    ("Portrait", "She smiles softly as a light breeze moves her hair, slow push-in, static background"),
    ("Portrait (he)", "He turns his head slightly and smiles, gentle camera push-in, static background"),
    ("Landscape", "Clouds drift slowly across the sky and the grass sways in the wind, slow pan right"),
    ("Water", "Gentle waves roll onto the shore under soft evening light, static camera"),
    ("Product", "The product turns slowly on its stand under soft studio light, slow orbit"),
    ("Pet", "The cat blinks slowly and its ears twitch, gentle push-in, static background"),
    ("Dog", "The dog wags its tail and tilts its head, gentle push-in, static background"),
    ("Old photo", "The people in the photo blink and smile gently, subtle motion, static camera"),
    ("Artwork", "The painting comes to life: leaves flutter and light shimmers, slow push-in"),
    ("City", "Cars glide along the street and lights flicker in the windows, slow pan left"),
)
"""Prompts by subject that members can pick and edit (the `prompt` option's autocomplete)."""


def templates_for(current: str) -> list[tuple[str, str]]:
    """Templates whose subject or text contains what the member typed (all when empty)."""
    needle = current.strip().lower()
    return [(label, text) for label, text in TEMPLATES if needle in f"{label} {text}".lower()]
