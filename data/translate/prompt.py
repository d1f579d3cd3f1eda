"""The few-shot completion prompt that turns any causal LM into a line-by-line translator.

Layout (the default header and labels for English -> Finnish)::

    Translate the following texts from English to Finnish. Keep code, names, numbers and markdown ...

    English: How do I keep my bread fresh for longer?
    Finnish: Miten pidän leivän tuoreena pidempään?
    ###
    ...
    English: <segment>
    Finnish:

The model continues after `Finnish:`; decoding stops at the stop marker (`###`) or at a line break, since a
segment is always a single line. The built-in examples were written for sisu; other language pairs must
bring their own (`prompt.examples`).
"""

from __future__ import annotations

import dataclasses

from data.errors import ConfigError
from data.text import cut_at_stop
from data.translate.config import TranslatePromptConfig

LANGUAGE_NAMES = {
    "da": "Danish",
    "de": "German",
    "en": "English",
    "es": "Spanish",
    "et": "Estonian",
    "fi": "Finnish",
    "fr": "French",
    "is": "Icelandic",
    "nb": "Norwegian",
    "no": "Norwegian",
    "sv": "Swedish",
}

# English -> Finnish pairs written for sisu: a question, inline code, markdown emphasis, dates and numbers,
# a conversational opener, a plain explanatory sentence.
DEFAULT_EXAMPLES: tuple[tuple[str, str], ...] = (
    ("How do I keep my bread fresh for longer?", "Miten pidän leivän tuoreena pidempään?"),
    (
        "Use the `sorted()` function if you need a new list instead of changing the old one.",
        "Käytä `sorted()`-funktiota, jos tarvitset uuden listan vanhan muuttamisen sijaan.",
    ),
    (
        "**Tip:** Let the dough rest in the fridge for at least 30 minutes.",
        "**Vinkki:** Anna taikinan levätä jääkaapissa vähintään 30 minuuttia.",
    ),
    (
        "The Winter War began on 30 November 1939 and ended in March 1940.",
        "Talvisota alkoi 30. marraskuuta 1939 ja päättyi maaliskuussa 1940.",
    ),
    ("Sure! Here is a short summary of the main points.", "Toki! Tässä on lyhyt yhteenveto pääkohdista."),
    (
        "Photosynthesis turns sunlight, water and carbon dioxide into sugar and oxygen.",
        "Fotosynteesi muuttaa auringonvalon, veden ja hiilidioksidin sokeriksi ja hapeksi.",
    ),
)


@dataclasses.dataclass(frozen=True)
class FewShotPrompt:
    """A rendered few-shot prefix plus the per-segment suffix; see the module docstring."""

    header: str
    examples: tuple[tuple[str, str], ...]
    source_label: str
    target_label: str
    stop: str

    @classmethod
    def from_config(cls, cfg: TranslatePromptConfig, *, source_lang: str, target_lang: str) -> FewShotPrompt:
        """The prompt of `cfg`; built-in examples only for en -> fi."""
        if cfg.examples is not None:
            examples = tuple((e.source, e.target) for e in cfg.examples)
        elif (source_lang, target_lang) == ("en", "fi"):
            examples = DEFAULT_EXAMPLES
        else:
            raise ConfigError(
                f"prompt.examples: sisu's built-in examples are English->Finnish; write a few "
                f"{source_lang}->{target_lang} pairs for prompt.examples"
            )
        source_name = LANGUAGE_NAMES.get(source_lang, source_lang)
        target_name = LANGUAGE_NAMES.get(target_lang, target_lang)
        try:
            header = cfg.header.format(source=source_name, target=target_name)
        except (KeyError, IndexError, ValueError) as exc:
            raise ConfigError(
                f"prompt.header: only {{source}} and {{target}} may be used as placeholders ({exc})"
            ) from None
        return cls(
            header=header.strip(),
            examples=examples,
            source_label=cfg.source_label or source_name,
            target_label=cfg.target_label or target_name,
            stop=cfg.stop,
        )

    @property
    def prefix(self) -> str:
        """The part shared by every prompt: header and examples."""
        blocks = [f"{self.header}\n\n"] if self.header else []
        blocks += [
            f"{self.source_label}: {source}\n{self.target_label}: {target}\n{self.stop}\n"
            for source, target in self.examples
        ]
        return "".join(blocks)

    def suffix(self, segment: str) -> str:
        """The part of the prompt that belongs to one segment (a single line)."""
        return f"{self.source_label}: {segment}\n{self.target_label}:"

    def render(self, segment: str) -> str:
        """The full prompt for one segment."""
        return self.prefix + self.suffix(segment)

    @property
    def stop_strings(self) -> tuple[str, ...]:
        return (self.stop, "\n")

    @property
    def markers(self) -> tuple[str, ...]:
        """Strings that betray scaffolding when they appear in a translation (and not in its original)."""
        return (self.stop, f"{self.source_label}:", f"{self.target_label}:")

    def clean(self, output: str) -> str:
        """A model continuation -> the translation: cut at the first stop string, surrounding spaces removed."""
        return cut_at_stop(output, self.stop_strings).strip()
