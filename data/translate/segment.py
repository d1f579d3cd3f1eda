"""Cut a markdown-ish text into translatable segments and put the translations back exactly.

`split_text(text)` returns a `Template`: verbatim parts interleaved with segments, such that
`template.fill(template.segments) == text` for every input. What stays verbatim (never sent to the model):

- fenced code blocks (```` ``` ```` or `~~~`, possibly indented), fence lines included; an unclosed fence
  keeps the rest of the text verbatim;
- blank lines and every line break, so paragraph structure and line endings (also `\\r\\n`) survive;
- each line's indentation, blockquote markers (`> `), markdown header markers (`## `), list markers (`- `,
  `* `, `+ `, `1. `, `1) `) and task boxes (`[ ] `), and trailing whitespace;
- the pipes and padding of table rows (`| a | b |`: each cell is its own segment);
- anything without a letter (numbers, rules like `---`, separator rows, emoji), and a bare URL or e-mail
  address (optionally in `<...>`): there is nothing to translate, and a model would only copy or mangle it.

A segment is the rest of one line (or one table cell). Lines longer than `max_chars` are split at sentence ends
(`.`, `!`, `?`, `…` followed by whitespace) into pieces of at most `max_chars` where possible; the whitespace
between the pieces stays verbatim. Inline code (`` `x` ``) stays inside its segment: the few-shot examples show
the model to keep it, and the cleaning filters look at text outside code only. Indented (four-space) code
blocks are not recognised as code: in chat data that indentation usually belongs to nested lists.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator, Sequence

FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})")
# indentation, blockquote markers, then a header marker or a list marker with an optional task box
LINE_PREFIX = re.compile(
    r"^[ \t]*(?:>[ \t]?)*(?:#{1,6}[ \t]+|(?:[-*+]|\d{1,9}[.)])[ \t]+(?:\[[ xX]\][ \t]+)?)?"
)
TABLE_ROW = re.compile(r"^[ \t]*\|.*\|[ \t\r]*$")
CELL_SPLIT = re.compile(r"(?<!\\)\|")
SENTENCE_GAP = re.compile(r"([.!?…][\"'’”)\]]*)(\s+)(?=\S)")
INLINE_CODE = re.compile(r"`[^`\n]+`")
BARE_ADDRESS = re.compile(r"^<?(?:[a-zA-Z][a-zA-Z0-9+.-]*://\S+|www\.\S+|[\w.+-]+@[\w-]+(?:\.[\w-]+)+)>?$")


@dataclasses.dataclass(frozen=True)
class Template:
    """`parts[0] + seg[0] + parts[1] + seg[1] + ... + parts[n]`, with `len(parts) == len(segments) + 1`."""

    parts: tuple[str, ...]
    segments: tuple[str, ...]

    def fill(self, translations: Sequence[str]) -> str:
        """The text with each segment replaced by its translation (same order as `segments`)."""
        if len(translations) != len(self.segments):
            raise ValueError(f"expected {len(self.segments)} translations, got {len(translations)}")
        out = [self.parts[0]]
        for translation, part in zip(translations, self.parts[1:]):
            out += [translation, part]
        return "".join(out)


class _Builder:
    def __init__(self) -> None:
        self.parts: list[str] = [""]
        self.segments: list[str] = []

    def verbatim(self, text: str) -> None:
        self.parts[-1] += text

    def segment(self, text: str) -> None:
        self.segments.append(text)
        self.parts.append("")

    def build(self) -> Template:
        return Template(tuple(self.parts), tuple(self.segments))


def has_letters(text: str) -> bool:
    return any(ch.isalpha() for ch in text)


def iter_lines(text: str) -> Iterator[tuple[str, bool]]:
    """(line without its "\\n", inside a code fence) for every line; fence lines count as code."""
    fence: str | None = None
    for line in text.split("\n"):
        if fence is None:
            match = FENCE.match(line)
            if match:
                fence = match.group(1)
                yield line, True
            else:
                yield line, False
        else:
            stripped = line.strip()
            if stripped.startswith(fence) and set(stripped) == {fence[0]}:
                fence = None
            yield line, True


def split_text(text: str, *, max_chars: int = 600) -> Template:
    """Segments and verbatim parts of `text` (see the module docstring)."""
    builder = _Builder()
    for index, (line, in_code) in enumerate(iter_lines(text)):
        if index:
            builder.verbatim("\n")
        if in_code:
            builder.verbatim(line)
        elif TABLE_ROW.match(line):
            cells = CELL_SPLIT.split(line)
            for i, cell in enumerate(cells):
                if i:
                    builder.verbatim("|")
                _add_core(builder, cell, max_chars=max_chars)
        else:
            prefix = LINE_PREFIX.match(line).group(0)  # type: ignore[union-attr]
            builder.verbatim(prefix)
            _add_core(builder, line[len(prefix) :], max_chars=max_chars)
    return builder.build()


def _add_core(builder: _Builder, text: str, *, max_chars: int) -> None:
    """Leading and trailing whitespace verbatim; the core as one or more segments (or verbatim)."""
    core = text.strip()
    if not core or not has_letters(core) or BARE_ADDRESS.match(core):
        builder.verbatim(text)
        return
    start = text.index(core)
    builder.verbatim(text[:start])
    pieces, gaps = sentence_pieces(core, max_chars=max_chars)
    for i, piece in enumerate(pieces):
        if i:
            builder.verbatim(gaps[i - 1])
        if has_letters(piece):
            builder.segment(piece)
        else:
            builder.verbatim(piece)
    builder.verbatim(text[start + len(core) :])


def sentence_pieces(core: str, *, max_chars: int) -> tuple[list[str], list[str]]:
    """(pieces, the whitespace between consecutive pieces): whole sentences packed greedily into pieces of at
    most `max_chars` (a longer sentence is a piece of its own). `core` has no surrounding whitespace."""
    if len(core) <= max_chars:
        return [core], []
    sentences: list[str] = []
    spaces: list[str] = []
    position = 0
    for match in SENTENCE_GAP.finditer(core):
        sentences.append(core[position : match.start(2)])
        spaces.append(match.group(2))
        position = match.end(2)
    sentences.append(core[position:])
    pieces, gaps = [sentences[0]], []
    for space, sentence in zip(spaces, sentences[1:]):
        if len(pieces[-1]) + len(space) + len(sentence) <= max_chars:
            pieces[-1] += space + sentence
        else:
            gaps.append(space)
            pieces.append(sentence)
    return pieces, gaps


def strip_code(text: str) -> str:
    """`text` without fenced code blocks and inline code spans (what the filters judge)."""
    lines = [line for line, in_code in iter_lines(text) if not in_code]
    return INLINE_CODE.sub(" ", "\n".join(lines))
