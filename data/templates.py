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
CHATML_END = "<|im_end|>"
BUILTIN_TEMPLATES = {"chatml": (CHATML_TEMPLATE, CHATML_END)}


class TemplateError(ValueError):
    """The chat template cannot be used for span-exact rendering."""


@dataclasses.dataclass(frozen=True)
class ChatTemplate:
    """A Jinja chat template and the text that ends an assistant turn."""

    name: str
    source: str
    end_of_turn: str

    @classmethod
    def resolve(cls, tokenizer: Any, name: str = "auto") -> ChatTemplate:
        """`auto`: the tokenizer's own template if it has one, else chatml; `tokenizer`; or a built-in name."""
        own = getattr(tokenizer, "chat_template", None)
        if isinstance(own, dict):  # several named templates: take the default one
            own = own.get("default")
        if name in ("auto", "tokenizer") and own:
            end = getattr(tokenizer, "eos_token", None) or CHATML_END
            if CHATML_END in own:
                end = CHATML_END
            return cls("tokenizer", own, end)
        if name == "tokenizer":
            raise TemplateError("data.template=tokenizer but the tokenizer has no chat template")
        builtin = "chatml" if name == "auto" else name
        if builtin not in BUILTIN_TEMPLATES:
            raise TemplateError(
                f"unknown chat template {name!r}; expected auto, tokenizer or one of {', '.join(BUILTIN_TEMPLATES)}"
            )
        source, end = BUILTIN_TEMPLATES[builtin]
        return cls(builtin, source, end)

    def render(self, tokenizer: Any, messages: Sequence[dict], *, add_generation_prompt: bool = False) -> str:
        return tokenizer.apply_chat_template(
            list(messages),
            chat_template=self.source,
            tokenize=False,
            add_generation_prompt=add_generation_prompt,
        )


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
