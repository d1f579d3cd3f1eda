"""`language_contrast` format: translated rows -> PreferenceRecords (translated chosen, original rejected)."""

from __future__ import annotations

import collections
import json
from pathlib import Path

import pytest

from data.config import DataConfig, SourceConfig
from data.errors import DataError, InvalidRecord
from data.language import detect_language, is_language
from data.mix import build_mix
from data.pipeline import data_kind
from data.records import ChatRecord, PreferenceRecord, stable_id
from data.sources import PREFERENCE_FORMATS, load_source
from data.sources.language_contrast import parse_row
from data.translate.items import output_row, record_fields

# Each text is a sentence or two: langdetect is unreliable on a few words. test_texts_are_detected_as_labelled
# pins the verdict on every one of them.
FI = {
    "system": "Olet avulias avustaja, joka vastaa suomeksi.",
    "egg_q": "Miten voin keittää täydellisen kananmunan? Haluan, että keltuainen jää pehmeäksi.",
    "egg_a": "Laita kananmuna kiehuvaan veteen ja keitä sitä noin kuusi minuuttia. Jäähdytä muna sen jälkeen "
    "kylmässä vedessä, niin keltuainen jää pehmeäksi.",
    "sky_q": "Kerro lyhyesti, miksi taivas on sininen.",
    "sky_a": "Auringonvalo siroaa ilmakehän molekyyleistä, ja lyhyet siniset aallonpituudet siroavat eniten. "
    "Siksi näemme taivaan sinisenä joka suunnassa.",
    "sunset_q": "Entä miksi auringonlasku on punainen?",
    "sunset_a": "Illalla valo kulkee paljon pidemmän matkan ilmakehän läpi. Sininen valo siroaa matkalla pois, "
    "ja jäljelle jäävät punaiset ja oranssit sävyt.",
    "capital_q": "Mikä on Suomen pääkaupunki ja kuinka monta ihmistä siellä asuu?",
    "capital_a": "Suomen pääkaupunki on Helsinki. Siellä asuu noin 670 000 ihmistä, ja koko "
    "pääkaupunkiseudulla yli miljoona.",
}
EN = {
    "system": "You are a helpful assistant who answers in Finnish.",
    "egg_q": "How can I boil a perfect egg? I want the yolk to stay soft.",
    "egg_a": "Put the egg into boiling water and cook it for about six minutes. Then cool the egg in cold "
    "water, so the yolk stays soft.",
    "sky_q": "Tell me briefly why the sky is blue.",
    "sky_a": "Sunlight scatters off the molecules of the atmosphere, and the short blue wavelengths scatter the "
    "most. That is why we see the sky as blue in every direction.",
    "sunset_q": "And why is the sunset red?",
    "sunset_a": "In the evening the light travels a much longer way through the atmosphere. The blue light "
    "scatters away on the way, and the red and orange shades remain.",
    "capital_q": "What is the capital of Finland and how many people live there?",
    "capital_a": "The capital of Finland is Helsinki. About 670,000 people live there, and more than a million "
    "in the whole capital region.",
}


def t(role: str, key: str) -> dict:
    """A translated message as launch/translate.py writes it."""
    return {"role": role, "content": FI[key], "orig_content": EN[key]}


def m(role: str, content: str) -> dict:
    return {"role": role, "content": content}


def chat_row(
    source_id: str = "chat-1", *, lang: str | None = "fi", q: str = "egg_q", a: str = "egg_a"
) -> dict:
    row = {"source_id": source_id, "messages": [t("user", q), t("assistant", a)]}
    if lang is not None:
        row["lang"] = lang
    return row


def pref_row(source_id: str = "pref-1") -> dict:
    return {
        "source_id": source_id,
        "lang": "fi",
        "prompt": [t("user", "capital_q")],
        "chosen": FI["capital_a"],
        "rejected": FI["sky_a"],  # the translated worse answer: not used
        "orig_chosen": EN["capital_a"],
        "orig_rejected": EN["sky_a"],
    }


def write_jsonl(path: Path, rows: list) -> str:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def load(tmp_path: Path, rows: list, **cfg):
    path = write_jsonl(tmp_path / "lc.jsonl", rows)
    return path, *load_source(SourceConfig(path=path, format="language_contrast", **cfg))


def test_texts_are_detected_as_labelled() -> None:
    assert {key: detect_language(text) for key, text in FI.items()} == dict.fromkeys(FI, "fi")
    assert {key: detect_language(text) for key, text in EN.items()} == dict.fromkeys(EN, "en")
    shouting = "JOKAINEN ASIANTUNTIJA ON OLLUT JOSKUS ALOITTELIJA, JOTEN KYSY ROHKEASTI JA OLE KÄRSIVÄLLINEN!"
    assert detect_language(shouting) == "fi"  # without lowercasing, langdetect says German
    assert detect_language("12 + 30 = 42 !!") is None and not is_language("12 + 30 = 42 !!", "fi")
    assert (
        is_language(FI["egg_a"], "fi")
        and is_language(FI["egg_a"], "FI")
        and is_language(EN["egg_a"], "en_US")
    )


def test_chat_row(tmp_path: Path) -> None:
    row = chat_row()
    row["messages"].insert(0, t("system", "system"))
    path, (record,), report = load(tmp_path, [row])
    assert record == PreferenceRecord(
        prompt=(m("system", FI["system"]), m("user", FI["egg_q"])),
        chosen=FI["egg_a"],
        rejected=EN["egg_a"],
        lang="fi",
        source_id="chat-1",
        origin=f"{path}:1",
    )
    assert (report.num_rows, report.num_records, report.skipped) == (1, 1, collections.Counter())


def test_preference_row_rejects_the_original_chosen(tmp_path: Path) -> None:
    path, (record,), _ = load(tmp_path, [pref_row()])
    assert record == PreferenceRecord(
        prompt=(m("user", FI["capital_q"]),),
        chosen=FI["capital_a"],
        rejected=EN["capital_a"],
        lang="fi",
        source_id="pref-1",
        origin=f"{path}:1",
    )


def test_preference_row_with_a_string_prompt_and_without_orig_rejected(tmp_path: Path) -> None:
    row = {"id": 7, "lang": "fi", "prompt": FI["sky_q"], "chosen": FI["sky_a"], "orig_chosen": EN["sky_a"]}
    _, (record,), _ = load(tmp_path, [row])
    assert record.prompt == (m("user", FI["sky_q"]),) and record.source_id == "7"
    assert (record.chosen, record.rejected) == (FI["sky_a"], EN["sky_a"])


def test_multi_turn_chat_answers_the_last_user_turn_and_keeps_earlier_turns_translated(
    tmp_path: Path,
) -> None:
    row = {
        "source_id": "chat-2",
        "lang": "fi",
        "messages": [
            t("user", "sky_q"),
            t("assistant", "sky_a"),
            t("user", "sunset_q"),
            t("assistant", "sunset_a"),
        ],
    }
    _, (record,), _ = load(tmp_path, [row])
    assert record.prompt == (m("user", FI["sky_q"]), m("assistant", FI["sky_a"]), m("user", FI["sunset_q"]))
    assert (record.chosen, record.rejected) == (FI["sunset_a"], EN["sunset_a"])


def test_only_the_answer_needs_orig_content(tmp_path: Path) -> None:
    row = {"lang": "fi", "messages": [m("user", FI["egg_q"]), t("assistant", "egg_a")]}
    _, (record,), _ = load(tmp_path, [row])
    assert record.prompt == (m("user", FI["egg_q"]),)
    assert record.source_id == stable_id([["user", FI["egg_q"]]])  # no id: a hash of the (translated) prompt


def test_language_drops_are_counted_with_their_origin_whatever_on_invalid(tmp_path: Path) -> None:
    english_chosen = chat_row("en-chosen")
    english_chosen["messages"][1]["content"] = EN["sky_a"]  # not translated, yet different from orig_content
    finnish_rejected = chat_row("fi-rejected")
    finnish_rejected["messages"][1]["orig_content"] = FI["sky_a"]  # the "original" is Finnish already
    untranslated = chat_row("same")
    untranslated["messages"][1]["content"] = EN["egg_a"]  # assistant turns not translated: content == orig
    untranslated["messages"][1]["orig_content"] = EN["egg_a"] + "\n"
    no_letters = pref_row("numbers")
    no_letters["chosen"] = "12 + 30 = 42"  # langdetect cannot classify it: not Finnish
    rows = [chat_row("ok-1"), english_chosen, finnish_rejected, untranslated, no_letters, pref_row("ok-2")]
    rows.append(chat_row("swedish", lang="sv"))
    for on_invalid in ("error", "skip"):
        path = write_jsonl(tmp_path / "lc.jsonl", rows)
        records, report = load_source(
            SourceConfig(path=path, format="language_contrast", lang="fi"), on_invalid=on_invalid
        )
        assert [r.source_id for r in records] == ["ok-1", "ok-2"]
        assert report.skipped == collections.Counter(
            chosen_not_in_target_language=2,
            rejected_in_target_language=1,
            chosen_equals_rejected=1,
            other_lang=1,
        )
        assert report.examples == {
            "chosen_not_in_target_language": f"{path}:2",
            "rejected_in_target_language": f"{path}:3",
            "chosen_equals_rejected": f"{path}:4",
            "other_lang": f"{path}:7",
        }
        assert report.num_rows == 7 == report.num_records + sum(report.skipped.values())
        assert "chosen_not_in_target_language=2" in report.summary()


CODE = """

```python
# Boil the egg for six minutes, then cool it in cold water so that the yolk stays soft.
# The water must be boiling before the egg goes in, otherwise the timing is wrong.
def boil_egg(egg, minutes=6):
    pot = fill_with_water(level="high")
    wait_until_boiling(pot)
    return cook(pot, egg, minutes=minutes)
```
"""


def test_code_says_nothing_about_the_language(tmp_path: Path) -> None:
    finnish = "Käytä tätä funktiota, niin keltuainen jää pehmeäksi ja valkuainen hyytyy kunnolla." + CODE
    english = "Use this function, so the yolk stays soft and the white sets properly." + CODE
    assert detect_language(finnish) == "en"  # the code outweighs the prose
    row = chat_row()
    row["messages"][1]["content"] = finnish + "Muista `wait_until_boiling(pot)` ennen kuin lisäät munan."
    row["messages"][1]["orig_content"] = english
    _, (record,), _ = load(tmp_path, [row])
    assert record.chosen.startswith("Käytä") and record.rejected == english
    code_only = chat_row()
    code_only["messages"][1]["content"] = code_only["messages"][1]["orig_content"] = CODE.strip()
    with pytest.raises(DataError, match="no usable records.*chosen_equals_rejected=1"):
        load(tmp_path, [code_only])


def test_target_language_comes_from_the_source_or_the_row(tmp_path: Path) -> None:
    # lang: en turns the contrast around: the English answer is chosen only if it is the translation.
    row = {
        "lang": "en",
        "prompt": [m("user", EN["sky_q"])],
        "chosen": EN["sky_a"],
        "orig_chosen": FI["sky_a"],
    }
    _, (record,), _ = load(tmp_path, [row])
    assert (record.lang, record.chosen, record.rejected) == ("en", EN["sky_a"], FI["sky_a"])
    unlabelled = chat_row(lang=None)
    _, (record,), _ = load(tmp_path, [unlabelled], lang="fi")
    assert record.lang == "fi"
    with pytest.raises(DataError, match=r"lc\.jsonl:1: missing field 'lang'"):
        load(tmp_path, [unlabelled])


def _without(row: dict, path: tuple, value=None, *, drop: bool = True) -> dict:
    """A deep copy of `row` with the key at `path` removed (or set to `value` when drop is False)."""
    row = json.loads(json.dumps(row))
    target = row
    for key in path[:-1]:
        target = target[key]
    if drop:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return row


@pytest.mark.parametrize(
    ("row", "reason", "words"),
    [
        (
            _without(chat_row(), ("messages", 1, "orig_content")),
            "missing_field",
            "messages[1] (the answer) has no 'orig_content'",
        ),
        (
            _without(chat_row(), ("messages", 1, "orig_content"), "", drop=False),
            "empty_content",
            "messages[1].orig_content is empty",
        ),
        (
            _without(chat_row(), ("messages", 1, "orig_content"), ["x"], drop=False),
            "wrong_type",
            "messages[1].orig_content must be a string, got list",
        ),
        (_without(pref_row(), ("orig_chosen",)), "missing_field", "missing field 'orig_chosen'"),
        (
            _without(pref_row(), ("orig_chosen",), 3, drop=False),
            "wrong_type",
            "field 'orig_chosen' must be a string, got int",
        ),
        (
            _without(pref_row(), ("chosen",), [m("assistant", "x")], drop=False),
            "wrong_type",
            "field 'chosen' must be a string, got list",
        ),
        (
            _without(pref_row(), ("prompt",), [t("user", "sky_q"), t("assistant", "sky_a")], drop=False),
            "prompt_not_ending_with_user",
            "prompt must end with a user turn",
        ),
        (
            {"lang": "fi", "messages": [t("user", "egg_q")]},
            "not_ending_with_assistant",
            "messages must end with an assistant turn",
        ),
        (
            {"lang": "fi", "chosen": FI["egg_a"], "orig_chosen": EN["egg_a"]},
            "missing_field",
            "missing field 'messages' (a translated chat) or 'prompt'",
        ),
        (_without(chat_row(), ("lang",), 5, drop=False), "wrong_type", "field 'lang' must be a string"),
    ],
)
def test_invalid_rows_follow_on_invalid(tmp_path: Path, row: dict, reason: str, words: str) -> None:
    path = write_jsonl(tmp_path / "lc.jsonl", [chat_row("a"), pref_row("b"), row])
    with pytest.raises(InvalidRecord) as info:
        load_source(SourceConfig(path=path, format="language_contrast"))
    assert str(info.value).startswith(f"{path}:3: ") and words in str(info.value), str(info.value)
    assert info.value.reason == reason and "\n" not in str(info.value)
    records, report = load_source(SourceConfig(path=path, format="language_contrast"), on_invalid="skip")
    assert len(records) == 2 and report.skipped == collections.Counter({reason: 1})
    assert report.examples == {reason: f"{path}:3"}
    assert report.num_rows == 3 == report.num_records + sum(report.skipped.values())


def test_parse_row_tells_a_drop_from_another_language() -> None:
    assert parse_row(chat_row(lang="sv"), origin="x:1", lang="fi") is None
    english = chat_row()
    english["messages"][1]["content"] = EN["sky_a"]
    assert parse_row(english, origin="x:1", lang=None) == "chosen_not_in_target_language"


def test_translate_output_rows_load_as_language_contrast(tmp_path: Path) -> None:
    """The writer (data.translate.items.output_row) and this reader agree on the schema."""
    chat = ChatRecord(
        messages=(
            m("system", EN["system"]),
            m("user", EN["sky_q"]),
            m("assistant", EN["sky_a"]),
            m("user", EN["sunset_q"]),
            m("assistant", EN["sunset_a"]),
        ),
        lang="en",
        source_id="chat-0007",
        origin="chat_en.jsonl:7",
    )
    pair = PreferenceRecord(
        prompt=(m("user", EN["capital_q"]),),
        chosen=EN["capital_a"],
        rejected=EN["egg_a"],
        lang="en",
        source_id="pref-0003",
        origin="pairs_en.jsonl:3",
    )

    def translations(record) -> dict[str, str]:
        # what launch/translate.py would produce: every field of the translated roles in Finnish
        english_to_finnish = {EN[key]: FI[key] for key in EN}
        return {
            f.name: english_to_finnish[f.text]
            for f in record_fields(record, roles=("user", "assistant"))
            if f.translate
        }

    rows = [output_row(record, translations(record), lang="fi") for record in (chat, pair)]
    assert rows[0]["messages"][0] == {"role": "system", "content": EN["system"], "orig_content": EN["system"]}
    path, records, report = load(tmp_path, rows)
    assert records == [
        PreferenceRecord(
            prompt=(
                m("system", EN["system"]),  # the system role was not translated
                m("user", FI["sky_q"]),
                m("assistant", FI["sky_a"]),
                m("user", FI["sunset_q"]),
            ),
            chosen=FI["sunset_a"],
            rejected=EN["sunset_a"],
            lang="fi",
            source_id="chat-0007",
            origin=f"{path}:1",
        ),
        PreferenceRecord(
            prompt=(m("user", FI["capital_q"]),),
            chosen=FI["capital_a"],
            rejected=EN["capital_a"],
            lang="fi",
            source_id="pref-0003",
            origin=f"{path}:2",
        ),
    ]
    assert report.num_rows == 2 and not report.skipped
    # assistant turns left untranslated (roles: user only) give identical answers: dropped, not trained on
    untranslated = output_row(
        chat, {k: v for k, v in translations(chat).items() if k != "messages.4"}, lang="fi"
    )
    with pytest.raises(DataError, match="chosen_equals_rejected=1"):
        load(tmp_path, [untranslated])


def test_dpo_mix_of_preference_and_language_contrast_sources(tmp_path: Path) -> None:
    pairs = write_jsonl(
        tmp_path / "pairs.jsonl", [{"prompt": "Why?", "chosen": "Because.", "rejected": "No."}]
    )
    contrast = write_jsonl(tmp_path / "contrast.jsonl", [chat_row("c-1"), pref_row("c-2")])
    chat = write_jsonl(tmp_path / "chat.jsonl", [{"messages": [m("user", "Hi"), m("assistant", "Hello")]}])
    cfg = DataConfig(
        sources=[
            SourceConfig(path=pairs, format="preference"),
            SourceConfig(path=contrast, format="language_contrast"),
        ]
    )
    assert "language_contrast" in PREFERENCE_FORMATS and data_kind(cfg) == "preference"
    records, reports = build_mix(cfg)
    assert [(r.source_id, r.lang) for r in records][1:] == [("c-1", "fi"), ("c-2", "fi")]
    assert [r.num_selected for r in reports] == [1, 2]
    mixed = DataConfig(
        sources=[SourceConfig(path=chat), SourceConfig(path=contrast, format="language_contrast")]
    )
    with pytest.raises(DataError, match="mixes chat formats"):
        data_kind(mixed)
    with pytest.raises(DataError, match="mixes chat and preference formats"):
        build_mix(mixed)
