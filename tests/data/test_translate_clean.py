"""Translation's cleaning: each filter on crafted cases (the pipeline with a fake translator is in
tests/eval/test_translation_pipeline.py)."""

from data.translate.clean import (
    REASONS,
    Cleaner,
    TranslatedField,
    gzip_ratio,
    max_consecutive_copies,
    target_probability,
)
from data.translate.config import CleaningConfig
from runtime.config import build_config

EN = (
    "The museum opens at nine in the morning and closes at six in the evening, "
    "except on Mondays when it is closed for cleaning."
)
FI = (
    "Museo aukeaa aamulla yhdeksältä ja sulkeutuu illalla kuudelta, paitsi maanantaisin, "
    "jolloin se on suljettu siivouksen vuoksi."
)
MARKERS = ("###", "English:", "Finnish:")


def cleaner(**overrides) -> Cleaner:
    cfg = build_config(CleaningConfig, overrides)
    return Cleaner(cfg, target_lang="fi", markers=MARKERS)


def field(original: str, translated: str, name: str = "messages.1", segments=None) -> TranslatedField:
    return TranslatedField(name, original, translated, tuple(segments or [(original, translated)]))


def reasons(fields, **overrides) -> list[str]:
    return [p.reason for p in cleaner(**overrides).check(fields)]


def test_a_good_translation_passes():
    assert reasons([field(EN, FI)]) == []
    code = "\n\n```python\nprint('hello world, this is English code')\n```"
    assert reasons([field(EN + code, FI + code, segments=[(EN, FI)])]) == []


def test_wrong_language_outside_code():
    german = (
        "Das Museum öffnet um neun Uhr morgens und schließt um sechs Uhr abends, außer montags, "
        "wenn es zur Reinigung geschlossen ist."
    )
    assert reasons([field(EN, german)]) == ["wrong_language"]
    assert target_probability(FI, "fi") > 0.9 and target_probability(german, "fi") < 0.1
    assert reasons([field(EN, german)], language={"enabled": False}) == []
    # code is not judged: Finnish prose around an English code block passes
    code = "\n```\n# this comment explains the English code in detail, at length\nx = compute(value)\n```"
    assert reasons([field(EN + code, FI + code, segments=[(EN, FI)])]) == []
    # too few letters to judge
    assert reasons([field("Thanks, see you!", "Danke, bis bald!")]) == []


def test_length_ratio_bounds():
    assert reasons([field(EN, "Museo aukeaa.")], language={"enabled": False}) == ["length_ratio"]
    assert reasons([field(EN, FI + " " + FI + " " + FI)], repetition={"enabled": False}) == ["length_ratio"]
    assert (
        reasons([field(EN, "Museo aukeaa.")], language={"enabled": False}, length_ratio={"min_ratio": 0.05})
        == []
    )
    assert reasons([field("Short one.", "Lyhyt.")]) == []  # below min_chars: not checked


def test_repetition_loops_by_ngrams_and_gzip():
    loop = FI + " ja sitten ja sitten ja sitten ja sitten ja sitten"
    assert max_consecutive_copies(loop, max_ngram=8) == (5, "ja sitten", len(FI) + 1)
    assert max_consecutive_copies("a b c a b c a b c", max_ngram=2) == (1, "", 0)
    assert max_consecutive_copies("x. A b c a b c a B c!", max_ngram=3)[:2] == (3, "a b c")
    (problem,) = cleaner(length_ratio={"enabled": False}).check([field(EN, loop)])
    assert problem.reason == "repetition" and problem.snippet == "… siivouksen vuoksi. " + " ".join(
        ["ja sitten"] * 5
    )
    assert problem.detail == "5 consecutive copies of 'ja sitten'"
    assert reasons([field(EN, loop)], length_ratio={"enabled": False}, repetition={"max_repeats": 5}) == []
    # a repetition the original has is not a loop
    original = EN + " Ha ha ha ha ha!"
    assert reasons([field(original, FI + " Ha ha ha ha ha!")]) == []
    # a long period (> max_ngram words) caught by the gzip ratio
    sentence = "Museo aukeaa aamulla yhdeksältä ja sulkeutuu illalla kuudelta paitsi maanantaisin tänään. "
    looped = sentence * 12
    assert gzip_ratio(looped) < 0.25 < gzip_ratio(EN * 2)
    assert reasons([field(EN * 2, looped)], length_ratio={"enabled": False}) == ["repetition"]


def test_scaffolding_echoes():
    for echo in ("Finnish: " + FI, FI + " ###", "Translate the following texts: " + FI, "English: " + FI):
        assert "scaffolding" in reasons([field(EN, echo)]), echo
    # present in the original: not scaffolding
    original = "Write 'Finnish: hello' as a label. " + EN
    assert reasons([field(original, "Kirjoita 'Finnish: hello' nimikkeeksi. " + FI)]) == []
    assert reasons([field(EN, "Finnish: " + FI)], scaffolding={"enabled": False}) == []


def test_empty_and_untranslated_segments():
    segments = [(EN, FI), ("A second paragraph here.", "")]
    assert reasons([field(EN + "\n\nA second paragraph here.", FI + "\n\n", segments=segments)]) == [
        "empty_segment"
    ]
    unchanged = "Please read the whole manual carefully."
    segments = [(EN, FI), (unchanged, unchanged)]
    text_en, text_fi = EN + "\n" + unchanged, FI + "\n" + unchanged
    assert reasons([field(text_en, text_fi, segments=segments)]) == ["untranslated_segment"]
    assert reasons([field(text_en, text_fi, segments=segments)], untranslated={"min_chars": 100}) == []
    # short names and inline code may stay as they are
    short = [(EN, FI), ("Python", "Python"), ("`numpy.linalg.solve`", "`numpy.linalg.solve`")]
    assert (
        reasons(
            [
                field(
                    EN + "\nPython\n`numpy.linalg.solve`",
                    FI + "\nPython\n`numpy.linalg.solve`",
                    segments=short,
                )
            ]
        )
        == []
    )


def test_identical_pairs():
    chosen = field("Paris is the capital of France.", "Pariisi on Ranskan pääkaupunki.", "chosen")
    rejected = field("Paris is a city in France.", "Pariisi on Ranskan pääkaupunki.", "rejected")
    assert reasons([chosen, rejected]) == ["identical_pair"]
    assert reasons([chosen, rejected], identical_pair={"enabled": False}) == []
    different = field("Paris is a city in France.", "Pariisi on kaupunki Ranskassa.", "rejected")
    assert reasons([chosen, different]) == []


def test_first_reason_order_and_one_problem_per_reason():
    bad = field(EN, "Finnish: ja ja ja ja ja ja ja")
    found = cleaner().check([bad, field(EN, "English: x", "messages.2")])
    assert [p.reason for p in found] == ["scaffolding", "repetition", "length_ratio"]
    assert found[0].field == "messages.1" and "Finnish:" in found[0].detail
    assert list(REASONS)[:4] == ["empty_segment", "budget_cut", "untranslated_segment", "scaffolding"]


def test_a_translated_marker_of_the_original_is_not_scaffolding():
    """'Translation:' in the original translates to 'Käännös:': correct, not the prompt echoing back."""
    original = "Translation: the word 'sisu' has no exact English equivalent, it means grit."
    translated = (
        "Käännös: sanalla 'sisu' ei ole tarkkaa englanninkielistä vastinetta, se tarkoittaa sitkeyttä."
    )
    assert "scaffolding" not in reasons([field(original, translated)])
    # without it in the original, the same output is scaffolding; the prompt's labels translate each other too
    assert "scaffolding" in reasons([field(EN, "Käännös: " + FI)])
    labels = Cleaner(build_config(CleaningConfig, {}), target_lang="fi", markers=MARKERS,
                     equivalents=[["English:", "Finnish:"]])  # fmt: skip
    assert "scaffolding" not in [p.reason for p in labels.check([field("English: a word", "Finnish: sana")])]
    assert "scaffolding" in [p.reason for p in labels.check([field(EN, "Finnish: " + FI)])]


def test_a_segment_cut_by_its_budget_is_removed_and_counted():
    cut = TranslatedField("messages.1", EN, FI, ((EN, FI),), cut=(EN,))
    found = cleaner().check([cut])
    assert [p.reason for p in found][:1] == ["budget_cut"] and found[0].detail.startswith(
        "translation stopped"
    )
    assert "budget_cut" not in reasons([cut], budget_cut={"enabled": False})
