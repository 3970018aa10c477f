"""Six languages: every locale file has every key the commands and the replies use, the same
placeholders as the English text, and fits Discord's limits; the bot syncs its commands with
the translations, and replies follow the member's locale, through the loopback Discord."""

from __future__ import annotations

import ast
import asyncio
import json
import re
from pathlib import Path

import discord
import pytest
from discord import app_commands

from bot.i18n import LOCALES, LOCALES_DIR, NAME_LOCATIONS, catalog, placeholders, tr

BOT = Path(__file__).resolve().parents[1] / "bot"
NAME_RULE = re.compile(r"^[-_'\w]{1,32}$")


class Recorder(app_commands.Translator):
    """Every string discord.py asks a translator for while building the command payloads."""

    def __init__(self) -> None:
        self.names: set[str] = set()
        self.texts: set[str] = set()
        self.context_menus: set[str] = set()

    async def translate(self, string, locale, context):  # type: ignore[no-untyped-def]
        if context.location in NAME_LOCATIONS:
            command = getattr(context, "data", None)
            if isinstance(command, app_commands.ContextMenu):
                self.context_menus.add(string.message)
            self.names.add(string.message)
        else:
            self.texts.add(string.message)
        return None


async def _command_strings() -> Recorder:
    """The commands as the bot declares them (its cogs loaded into a bare Bot)."""
    from discord.ext import commands

    from bot.app import EXTENSIONS

    bot = commands.Bot(command_prefix="!", intents=discord.Intents.none())
    for extension in EXTENSIONS:
        await bot.load_extension(extension)
    recorder = Recorder()
    for command in bot.tree.get_commands():
        await command.get_translated_payload(bot.tree, recorder)
    return recorder


def _constants(tree: ast.Module) -> dict[str, str]:
    return {
        target.id: node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
        for target in node.targets if isinstance(target, ast.Name)
    }


def reply_keys() -> set[str]:
    """Every English template the bot passes to `tr`: string literals and module constants
    read from the source, and the tables of words it translates one by one."""
    from bot.cogs.balance import KIND_LABELS
    from bot.edit import MOTION_WORDS
    from bot.embeds import LOOP_METHODS
    from contract import CAMERA_LABELS

    keys = set(CAMERA_LABELS.values()) | set(MOTION_WORDS.values()) | set(KIND_LABELS.values())
    keys |= set(LOOP_METHODS.values())
    from bot.buttons import DeleteButton, DeleteTakesButton

    keys |= {DeleteButton.gone, DeleteTakesButton.gone}
    from bot import library

    # The library's buttons are labelled in the member's language when its page is drawn.
    keys |= {
        library.PostAgainButton.label, library.NewPhotoButton.label, library.DeleteEntryButton.label,
        library.NewerButton.label, library.OlderButton.label, "★ Favourite", "☆ Unfavourite",
    }
    for path in BOT.rglob("*.py"):
        tree = ast.parse(path.read_text())
        constants = _constants(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "tr" and len(node.args) >= 2:
                text = node.args[1]
                if isinstance(text, ast.Constant) and isinstance(text.value, str):
                    keys.add(text.value)
                elif isinstance(text, ast.Name) and text.id in constants:
                    keys.add(constants[text.id])
    return keys


@pytest.fixture(scope="module")
def commands_seen() -> Recorder:
    return asyncio.run(_command_strings())


@pytest.mark.parametrize("code", sorted(LOCALES))
def test_every_locale_has_every_key_and_placeholder(code: str, commands_seen: Recorder) -> None:
    data = json.loads((LOCALES_DIR / f"{code}.json").read_text(encoding="utf-8"))
    assert set(data) == {"names", "texts", "replies"}
    assert set(data["names"]) == commands_seen.names, code
    assert set(data["texts"]) == commands_seen.texts, code
    assert set(data["replies"]) == reply_keys(), code
    for table in ("texts", "replies"):
        for english, translated in data[table].items():
            assert translated.strip(), (code, english)
            assert placeholders(translated) == placeholders(english), (code, english, translated)


@pytest.mark.parametrize("code", sorted(LOCALES))
def test_every_translation_fits_discords_limits(code: str, commands_seen: Recorder) -> None:
    data = catalog(code)
    for english, name in data["names"].items():
        if english in commands_seen.context_menus:
            assert 1 <= len(name) <= 32, (code, name)
        else:
            assert NAME_RULE.match(name) and name == name.lower(), (code, name)
    for english, text in data["texts"].items():
        assert 1 <= len(text) <= 100, (code, english, text)
    # Modal titles, labels and option labels: 45 characters for titles and labels, 100 for
    # option labels and descriptions (the longest a filled-in placeholder makes them counts).
    from bot.i18n import tr as translate

    locale = LOCALES[code]
    for english in ("Edit and animate again", "Edit: model, negative prompt, photos", "Extend this video",
                    "Animate this photo", "Prompt", "Camera", "Motion strength", "Length", "Options",
                    "Model", "Avoid (negative prompt)", "New photo", "End frame",
                    "What happens next (prompt)", "Length in seconds"):
        assert len(translate(locale, english)) <= 45, (code, english)
    for english in ("A seamless loop", "Sound", "keep the sound the model makes", "Only I see it",
                    "Next: model, negative prompt, new photo", "a second form before it starts",
                    "leave empty to keep the clip's photo", "Model, negative prompt, photos…",
                    "a last frame to end on (models that support it)",
                    "progress and video private to you (by DM after 15 minutes)"):
        assert len(translate(locale, english)) <= 100, (code, english)
    assert len(translate(locale, "{seconds} seconds", seconds="10")) <= 100


def test_a_missing_or_broken_translation_falls_back_to_english(monkeypatch) -> None:
    monkeypatch.setitem(catalog("de")["replies"], "That video no longer exists.", "Dieses {video} gibt es nicht mehr.")
    assert tr(discord.Locale.german, "That video no longer exists.") == "That video no longer exists."
    assert tr(discord.Locale.korean, "{n} credits", n=3) == "3 credits"
    assert tr(discord.Locale.german, "{n} credits", n=3) == "3 Credits"
    # Latin-American Spanish and European Portuguese read the nearest file.
    assert tr("es-419", "Your credits") == tr(discord.Locale.spain_spanish, "Your credits") != "Your credits"


@pytest.mark.asyncio
@pytest.mark.usefixtures("ray_instance")
async def test_commands_and_replies_in_the_members_language(tmp_path: Path) -> None:
    """The synced /animate carries every language's name and description; a German member
    reads /balance, a refusal and the Edit form in German, an English one in English."""
    from loopback import Upload
    from photos import photo_bytes
    from world import bot_world, has_video, private_text

    async with bot_world(tmp_path, guild_ids="", welcome_credits=1) as w:
        d = w.discord
        (animate,) = [c for c in d.commands() if c["name"] == "animate"]
        for code in LOCALES:
            assert animate["name_localizations"][code] == catalog(code)["names"]["animate"]
            assert animate["description_localizations"][code] == catalog(code)["texts"][animate["description"]]
        camera = next(o for o in animate["options"] if o["name"] == "camera")
        assert camera["name_localizations"]["ja"] == catalog("ja")["names"]["camera"]
        assert camera["choices"][1]["name_localizations"]["fr"] == catalog("fr")["texts"]["zoom in"]

        hans = d.add_member("hans", locale="de")
        balance = await d.slash("balance", user=hans)
        answer = await balance.original()
        assert answer.embeds[0]["title"] == catalog("de")["replies"]["Your credits"]

        run = await d.slash(
            "animate", {"image": Upload(photo_bytes("chelsea"), "c.png"), "duration": 2.0}, user=hans,
        )
        clip = await run.message(has_video, timeout=60)
        job_id = int(re.search(r"Job (\d+)", clip.text()).group(1))
        expected = tr("de", "Queued as job {job} for {cost}; you have {balance} left.",
                      job=job_id, cost="X", balance="Y")
        assert (await private_text(run)).startswith(expected.split("X")[0])
        edit = await d.click(clip, "Edit", user=hans)
        modal = await edit.modal()
        assert modal["title"] == catalog("de")["replies"]["Edit and animate again"]
        assert modal["components"][0]["label"] == catalog("de")["replies"]["Prompt"]
        german = await private_text(await d.click(clip, "Info", user=hans))
        assert german.splitlines()[1] == tr("de", "Prompt: {text}", text="—")
        # Whoever clicks decides: an English member reads the same Info in English.
        english = await private_text(await d.click(clip, "Info"))
        assert english.splitlines()[1] == "Prompt: —"
        # Their library in German: the heading, the entry's fields and its buttons.
        shelf = await private_text(await d.slash("history", user=hans))
        assert tr("de", "**Your videos**, newest first: {first}–{last} of {total}.",
                  first=1, last=1, total=1) in shelf
        # A refusal in German too: the one credit went on the first video.
        again = await d.slash(
            "animate", {"image": Upload(photo_bytes("chelsea"), "c.png"), "duration": 2.0}, user=hans,
        )
        refusal = await private_text(again)
        assert refusal.startswith(tr("de", "This video costs {cost} and you have {balance}.",
                                     cost="X", balance="Y").split("X")[0])
        assert refusal.endswith(tr("de", "Nothing was charged."))
