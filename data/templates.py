"""Chat rendering with character spans of the trained (assistant) text.

A conversation is rendered once with the chat template; the span of every assistant turn is found by rendering
growing prefixes of the conversation and checked against the full rendering. A template whose rendering of a
prefix is not a prefix of the full rendering (it rewrites earlier turns, e.g. drops past reasoning) cannot
be masked reliably and is rejected with a clear error.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

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


class TemplateError(ValueError):
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

    def render(self, tokenizer: Any, messages: Sequence[dict], *, add_generation_prompt: bool = False) -> str:
        return tokenizer.apply_chat_template(
            list(messages),
            chat_template=self.source,
            tokenize=False,
            add_generation_prompt=add_generation_prompt,
        )

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


def _trim_to_end_token(span_text: str, end_of_turn: str) -> int:
    """Length of the span up to and including its end-of-turn token (the separator after it is not trained)."""
    pos = span_text.rfind(end_of_turn)
    return len(span_text) if pos < 0 else pos + len(end_of_turn)


def render_chat(tokenizer: Any, template: ChatTemplate, messages: Sequence[dict]) -> RenderedChat:
    """Render `messages` and locate every assistant turn (content plus end token) in the text."""
    full = template.render(tokenizer, messages)
    spans = []
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = template.render(tokenizer, messages[:index], add_generation_prompt=True) if index else ""
        through = template.render(tokenizer, messages[: index + 1])
        if not through.startswith(before) or not full.startswith(through):
            raise TemplateError(
                f"chat template {template.name!r} is not prefix-stable at turn {index} (rendering a prefix of the "
                "conversation does not give a prefix of the full rendering); use data.template=chatml or "
                "turn off data.prompt_masking"
            )
        start = len(before)
        end = start + _trim_to_end_token(through[start:], template.end_of_turn)
        if message["content"] not in full[start:end]:
            raise TemplateError(
                f"chat template {template.name!r}: assistant turn {index} not found where expected"
            )
        spans.append((start, end))
    return RenderedChat(full, tuple(spans))


def render_preference(
    tokenizer: Any, template: ChatTemplate, prompt: Sequence[dict], completion: str
) -> tuple[str, str]:
    """(prompt text with the generation prompt, completion text including its end token)."""
    prompt_text = template.render(tokenizer, prompt, add_generation_prompt=True)
    full = template.render(tokenizer, [*prompt, {"role": "assistant", "content": completion}])
    if not full.startswith(prompt_text):
        raise TemplateError(f"chat template {template.name!r} is not prefix-stable for the generation prompt")
    tail = full[len(prompt_text) :]
    return prompt_text, tail[: _trim_to_end_token(tail, template.end_of_turn)]
