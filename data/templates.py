"""Chat rendering with character spans of the trained (assistant) text, for any model's own chat template.

The trained text of an assistant turn is its content as the template writes it (Llama 3 trims it) plus the
template's end-of-turn marker; never a system prompt the template injects, never the next turn's header. Turns
are located with placeholders (`locate_assistant_turns`), which works for templates that rewrite other turns
(Mistral) and trim content (Llama 3). A conversation a template cannot express raises `TemplateError`: a data
problem, which the tokenizer handles per record under `data.on_invalid`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from data.errors import SisuError

# ChatML, as Poro-34B-chat and SmolLM2 use it (without SmolLM2's default system prompt).
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
CHATML_START = "<|im_start|>"
CHATML_END = "<|im_end|>"
# name -> (template, end of an assistant turn, the special markers the template writes)
BUILTIN_TEMPLATES = {"chatml": (CHATML_TEMPLATE, CHATML_END, (CHATML_START, CHATML_END))}
_PROBE = "\u2063sisu-end-of-turn-probe\u2063"  # an assistant reply no template rewrites


class TemplateError(SisuError):
    """The chat template cannot be used for span-exact rendering."""


@dataclasses.dataclass(frozen=True)
class ChatTemplate:
    """A Jinja chat template, the text that ends an assistant turn, and the special markers it writes.

    `markers` are the strings a built-in template needs as single tokens (ChatML's <|im_start|> and <|im_end|>);
    a tokenizer's own template has none to add (its markers are that tokenizer's tokens already).
    """

    name: str
    source: str
    end_of_turn: str
    markers: tuple[str, ...] = ()

    @classmethod
    def resolve(cls, tokenizer: Any, name: str = "auto") -> ChatTemplate:
        """`auto`: the tokenizer's own template if it has one, else chatml; `tokenizer`; or a built-in name."""
        own = getattr(tokenizer, "chat_template", None)
        if isinstance(own, dict):  # several named templates: take the default one
            own = own.get("default")
        if name in ("auto", "tokenizer") and own:
            return cls("tokenizer", own, end_of_turn_of(tokenizer, own))
        if name == "tokenizer":
            raise TemplateError("data.template=tokenizer but the tokenizer has no chat template")
        builtin = "chatml" if name == "auto" else name
        if builtin not in BUILTIN_TEMPLATES:
            raise TemplateError(
                f"unknown chat template {name!r}; expected auto, tokenizer or one of {', '.join(BUILTIN_TEMPLATES)}"
            )
        source, end, markers = BUILTIN_TEMPLATES[builtin]
        return cls(builtin, source, end, markers)

    def render(
        self,
        tokenizer: Any,
        messages: Sequence[dict],
        *,
        add_generation_prompt: bool = False,
        **variables: Any,
    ) -> str:
        return tokenizer.apply_chat_template(
            list(messages),
            chat_template=self.source,
            tokenize=False,
            add_generation_prompt=add_generation_prompt,
            **variables,
        )

    def system_prompt_fold(self, tokenizer: Any) -> str | None:
        """Where a system prompt must go for this template to write it in a training conversation (one that ends
        with an answer): None when the template writes system messages; "first_user" when it has no system role
        (Gemma 2 raises on one; Gemma's documentation puts instructions in the first user turn); "last_user" when
        it writes the system prompt only if the conversation ends with a user turn (Mistral's templates; Mistral's
        own tokenizer puts it before the last user message)."""
        probe = [
            {"role": "system", "content": _PROBE},
            {"role": "user", "content": "U"},
            {"role": "assistant", "content": "A"},
        ]
        try:
            text = self.render(tokenizer, probe)
        except Exception:  # noqa: BLE001 - the template's raise_exception
            return "first_user"
        return None if _PROBE in text else "last_user"

    def missing_markers(self, tokenizer: Any) -> list[str]:
        """The markers of this template that the tokenizer does not encode as one token."""
        return [m for m in self.markers if len(tokenizer(m, add_special_tokens=False)["input_ids"]) != 1]


def end_of_turn_of(tokenizer: Any, source: str) -> str:
    """The text a template writes right after an assistant reply (its end-of-turn marker), found by rendering a
    one-turn conversation: <|eot_id|> for Llama 3, <end_of_turn> for Gemma, <|end|> for Phi-3.5, the tokenizer's
    eos for templates that write `eos_token`. Falls back to the eos token when the template writes nothing."""
    eos = getattr(tokenizer, "eos_token", None) or CHATML_END
    try:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": _PROBE}],
            chat_template=source,
            tokenize=False,
        )
    except Exception:  # noqa: BLE001 - a template that cannot render this conversation: keep the eos
        return eos
    at = text.rfind(_PROBE)
    tail = text[at + len(_PROBE) :].strip() if at >= 0 else ""
    if not tail:
        return eos
    if tail.startswith("<") and ">" in tail:  # a marker such as <|eot_id|>, possibly followed by the eos
        return tail[: tail.index(">") + 1]
    return tail.split()[0]


@dataclasses.dataclass(frozen=True)
class RenderedChat:
    """Full text of a conversation and the [start, end) character spans that carry the loss when masking."""

    text: str
    assistant_spans: tuple[tuple[int, int], ...]


def _sentinel(index: int) -> str:
    return f"\u2063sisu-turn-{index}\u2063"


def _content_as_written(full: str, at: int, content: str, following: str) -> str | None:
    """The form in which the template wrote `content` at position `at` of `full` (as is, or trimmed, as Llama 3
    and others do), checked against the template text that must follow it; None when none fits."""
    for candidate in dict.fromkeys((content, content.strip(), content.rstrip(), content.lstrip())):
        if full.startswith(candidate, at) and full.startswith(following, at + len(candidate)):
            return candidate
    return None


def fold_system(messages: Sequence[dict], into: str) -> list[dict]:
    """The system prompt prepended (with a blank line) to the first or the last user turn; see
    `ChatTemplate.system_prompt_fold`."""
    system, *rest = messages
    users = [i for i, m in enumerate(rest) if m["role"] == "user"]
    target = users[0] if into == "first_user" else users[-1]
    rest[target] = {**rest[target], "content": f"{system['content']}\n\n{rest[target]['content']}"}
    return rest


def _render(tokenizer: Any, template: ChatTemplate, messages: Sequence[dict], variables: dict) -> str:
    try:
        return template.render(tokenizer, messages, **variables)
    except Exception as exc:  # noqa: BLE001 - a template's own raise_exception, or any Jinja error
        raise TemplateError(f"chat template {template.name!r}: {str(exc).splitlines()[0]}") from None


def locate_assistant_turns(
    tokenizer: Any, template: ChatTemplate, messages: Sequence[dict], *, variables: dict | None = None
) -> tuple[str, list[tuple[int, int]], str | None]:
    """(text, spans, folded): the conversation as the template renders it, per assistant turn the [start, end)
    characters of its content as written (possibly trimmed) plus the end-of-turn marker right after, and where the
    system prompt was folded (None, "first_user", "last_user").

    The turns are found by rendering the conversation a second time with every assistant content replaced by a
    unique placeholder: the text between placeholders is what the template writes around the answers (headers,
    separators, a default system prompt, a system prompt it moves to another turn), and the real rendering must
    be exactly that text with each answer put back. No prefix of the conversation is rendered, so templates that
    rewrite other turns are located all the same. A system prompt the template would not write (Gemma 2 has no
    system role; Mistral's templates write it only before a final user turn) is folded into a user turn as the
    model family's own documentation or tokenizer does (`ChatTemplate.system_prompt_fold`), never dropped.
    `variables` go to the template as extra variables (e.g. a fixed `date_string` for Llama 3.x).
    """
    variables = variables or {}
    messages = list(messages)
    folded = None
    if messages and messages[0]["role"] == "system":
        folded = template.system_prompt_fold(tokenizer)
        if folded is not None:
            messages = fold_system(messages, folded)
    turns = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
    skeleton_messages = [
        {**m, "content": _sentinel(i)} if m["role"] == "assistant" else m for i, m in enumerate(messages)
    ]
    full = _render(tokenizer, template, messages, variables)
    skeleton = _render(tokenizer, template, skeleton_messages, variables)
    pieces, cursor = [], 0
    for i in turns:
        at = skeleton.find(_sentinel(i), cursor)
        if at < 0 or skeleton.find(_sentinel(i), at + 1) >= 0:
            raise TemplateError(f"chat template {template.name!r} does not write assistant turn {i} once")
        pieces.append(skeleton[cursor:at])
        cursor = at + len(_sentinel(i))
    pieces.append(skeleton[cursor:])
    spans, at = [], 0
    for n, i in enumerate(turns):
        if not full.startswith(pieces[n], at):
            raise TemplateError(
                f"chat template {template.name!r} renders the text before assistant turn {i} differently"
            )
        at += len(pieces[n])
        written = _content_as_written(full, at, messages[i]["content"], pieces[n + 1])
        if written is None:
            raise TemplateError(f"chat template {template.name!r} rewrites assistant turn {i}")
        end = at + len(written)
        if full.startswith(template.end_of_turn, end):
            end += len(template.end_of_turn)
        spans.append((at, end))
        at += len(written)
    if full[at:] != pieces[-1]:
        raise TemplateError(
            f"chat template {template.name!r} renders the text after the last answer differently"
        )
    return full, spans, folded


def render_chat(tokenizer: Any, template: ChatTemplate, messages: Sequence[dict]) -> RenderedChat:
    """Render `messages` and locate every assistant turn (content as written plus its end-of-turn marker)."""
    text, spans, _folded = locate_assistant_turns(tokenizer, template, messages)
    return RenderedChat(text, tuple(spans))


def render_preference(
    tokenizer: Any, template: ChatTemplate, prompt: Sequence[dict], completion: str
) -> tuple[str, str]:
    """(the text before the completion, the completion as written plus its end-of-turn marker), both as the
    template renders the prompt followed by this answer."""
    text, spans, _folded = locate_assistant_turns(
        tokenizer, template, [*prompt, {"role": "assistant", "content": completion}]
    )
    start, end = spans[-1]
    return text[:start], text[start:end]
