"""Sentence splitting and word tokenization: the Punkt / word_tokenize behaviours the checks rely on."""

from __future__ import annotations

import pytest

from eval.ifeval.text import (
    FINNISH,
    count_words,
    make_text_tools,
    split_sentences,
    treebank_tokens,
    word_tokens,
)


@pytest.mark.parametrize(
    ("text", "sentences"),
    [
        ("Hello world. How are you?", ["Hello world.", "How are you?"]),
        # known abbreviations do not end a sentence; everyday ones like e.g./etc. do (as in Punkt)
        ("Dr. Smith is here. Mr. Jones too.", ["Dr. Smith is here.", "Mr. Jones too."]),
        ("This is e.g. the best.", ["This is e.g.", "the best."]),
        ("Apples, pears etc. are fine.", ["Apples, pears etc.", "are fine."]),
        ("The U.S. The end.", ["The U.S.", "The end."]),
        ("It is 5 a.m. The sun rose.", ["It is 5 a.m.", "The sun rose."]),
        # decimals, initials and names
        ("Version 3.5 is out. Great.", ["Version 3.5 is out.", "Great."]),
        ("J. K. Rowling wrote it.", ["J. K. Rowling wrote it."]),
        ("J.K. Rowling wrote it.", ["J.K. Rowling wrote it."]),
        ("Plan B. The plan.", ["Plan B.", "The plan."]),
        # list numbers end a "sentence" before a capitalised word, not before a lower-case one
        (
            "Here is a list:\n1. First item.\n2. Second item.",
            ["Here is a list:\n1.", "First item.", "2.", "Second item."],
        ),
        ("In 2023. the end", ["In 2023. the end"]),
        # ellipses: a new sentence only before a sentence-opening word
        ("Well... I think so.", ["Well...", "I think so."]),
        ("Wait... what? No!", ["Wait... what?", "No!"]),
        ("Hi...And then", ["Hi...And then"]),
        # runs of ! and ?, quotes and brackets after the boundary
        ("Hello?! Yes.", ["Hello?!", "Yes."]),
        ("Hi!!! I promise.", ["Hi!!!", "I promise."]),
        ('He said "Hi?" he said.', ['He said "Hi?"', "he said."]),
        ("(Sent1.) Sent2.", ["(Sent1.)", "Sent2."]),
        ('Wow."Really"', ["Wow.", '"Really"']),
        ("**Note.** Next", ["**Note.", "** Next"]),
        ("1. **Bold** text", ["1.", "**Bold** text"]),
        ("End.\n\nNew paragraph", ["End.", "New paragraph"]),
        ("word .Next", ["word .Next"]),
        ("", []),
        ("   \n ", []),
    ],
)
def test_split_sentences_like_punkt(text, sentences):
    assert split_sentences(text) == sentences


def test_finnish_rules_keep_abbreviations_and_ordinals():
    text = "Suomi itsenäistyi 6. joulukuuta 1917. Juhlimme sitä esim. kynttilöillä. Se on perinne."
    assert split_sentences(text, FINNISH) == [
        "Suomi itsenäistyi 6. joulukuuta 1917.",
        "Juhlimme sitä esim. kynttilöillä.",
        "Se on perinne.",
    ]
    # The English rules (the reference's) split after "esim.".
    assert len(split_sentences(text)) == 4


@pytest.mark.parametrize(
    ("sentence", "tokens"),
    [
        ("I'm happy.", ["I", "'m", "happy", "."]),
        ("I DON'T KNOW.", ["I", "DO", "N'T", "KNOW", "."]),
        ("NASA's rover, (the best)!", ["NASA", "'s", "rover", ",", "(", "the", "best", ")", "!"]),
        ("Q&A at 12:30 on TL;DR", ["Q", "&", "A", "at", "12:30", "on", "TL", ";", "DR"]),
        ('He said "HI" to me.', ["He", "said", "``", "HI", "''", "to", "me", "."]),
        ("CANNOT WAIT... GONNA GO", ["CAN", "NOT", "WAIT", "...", "GON", "NA", "GO"]),
        ("**BOLD** and U.S. stuff", ["*", "*", "BOLD", "*", "*", "and", "U.S.", "stuff"]),
        ("DON\u2019T STOP", ["DON", "\u2019", "T", "STOP"]),
    ],
)
def test_treebank_tokens(sentence, tokens):
    assert treebank_tokens(sentence) == tokens


def test_word_tokens_split_sentences_first():
    # "CAN'T." ends a sentence, so its period is split off and the contraction separated.
    assert [t for t in word_tokens("I CAN'T. THIS IS IT") if t.isupper()] == [
        "I",
        "CA",
        "N'T",
        "THIS",
        "IS",
        "IT",
    ]


@pytest.mark.parametrize(
    ("text", "words"), [("one two-three", 3), ("don't", 2), ("", 0), ("über öl", 2), ("3.14", 2)]
)
def test_count_words(text, words):
    assert count_words(text) == words


def test_unknown_splitter_is_a_value_error():
    with pytest.raises(ValueError, match="unknown sentence_splitter"):
        make_text_tools("spacy", "en")
