"""Chat templates: conversations rendered to text with a tokenizer's Jinja ``chat_template``.

A chat template is the Jinja source Hugging Face keeps in ``tokenizer_config.json`` (``chat_template``)
and renders in ``transformers.utils.chat_template_utils``: the template sees ``messages`` (a list of
``{"role": ..., "content": ...}``), ``add_generation_prompt`` and the tokenizer's special tokens
(``bos_token``, ``eos_token``, ...), and it runs in Jinja's ``ImmutableSandboxedEnvironment`` with
``trim_blocks``/``lstrip_blocks``, the ``loopcontrols`` extension, a ``tojson`` filter that does not
escape HTML, and the globals ``raise_exception`` and ``strftime_now``, exactly as transformers sets
them up, so a template renders here as it does there. ``{% generation %}`` blocks (transformers'
assistant-mask marker) render their body.

A tokenizer without a template (the builtin ones) uses :data:`DEFAULT_CHAT_TEMPLATE`, in the style
of Zephyr (Tunstall et al. 2023)::

    <bos><|system|>\\n{system}<eos><|user|>\\n{user}<eos><|assistant|>\\n{answer}<eos>

where ``<bos>``/``<eos>`` are the tokenizer's bos and eos tokens (a BERT vocabulary's [CLS] and [SEP]
when it has none, as processor ``llm_pretrain`` wraps documents); ``add_generation_prompt`` appends
``<|assistant|>\\n``. Every turn ends with eos, so the labels of an answer are its tokens and the
eos, and a model trained on it stops after its answer.

:func:`assistant_spans` finds the characters of the assistant turns in the rendered text by
rendering each prefix of the conversation: the text an assistant message adds to the rendering that
ends with the generation prompt is that turn (its content and the end-of-turn tokens the template
writes after it, eos included).
"""
from __future__ import annotations

import functools
import json
from datetime import datetime
from typing import ClassVar

import jinja2
from jinja2 import nodes
from jinja2.ext import Extension
from jinja2.sandbox import ImmutableSandboxedEnvironment

from uer.errors import UerError

DEFAULT_CHAT_TEMPLATE = (
    "{{ bos_token | default(cls_token) }}{% set end = eos_token | default(sep_token) %}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\\n' + message['content'] + end }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
)
"""The chat template of tokenizers that have none (see the module docstring)."""


class _Generation(Extension):
    """``{% generation %}...{% endgeneration %}``: renders its body (transformers marks assistant
    text with it for ``return_assistant_tokens_mask``; here :func:`assistant_spans` finds it)."""

    tags: ClassVar[set[str]] = {"generation"}

    def parse(self, parser) -> list[nodes.Node]:
        next(parser.stream)
        return parser.parse_statements(("name:endgeneration",), drop_needle=True)


def _raise_exception(message: str):
    raise jinja2.exceptions.TemplateError(message)


def _tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False) -> str:
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


@functools.lru_cache(maxsize=8)
def _compiled(template: str) -> jinja2.Template:
    """The template compiled in transformers' sandboxed environment (see the module docstring)."""
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[_Generation, "jinja2.ext.loopcontrols"])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env.from_string(template)


def chat_template(tokenizer) -> str:
    """The tokenizer's ``chat_template`` (Jinja source), or :data:`DEFAULT_CHAT_TEMPLATE` when it has none."""
    return getattr(tokenizer, "chat_template", None) or DEFAULT_CHAT_TEMPLATE


def render_chat(messages: list[dict], tokenizer, add_generation_prompt: bool = False) -> str:
    """The text of ``messages`` (``[{"role": "system" | "user" | "assistant", "content": str}, ...]``)
    by the tokenizer's chat template (:func:`chat_template`), as transformers'
    ``apply_chat_template(messages, tokenize=False, add_generation_prompt=...)`` renders it. The
    template also sees ``tools`` and ``documents`` (None: no tool use, no retrieval) and the
    tokenizer's special tokens as ``<role>_token`` (``bos_token``, ``eos_token``, ...; undefined for
    a role the tokenizer lacks). With ``add_generation_prompt`` the text ends where the assistant's
    answer begins (for generation).

    Raises:
        UerError: the template does not compile, or fails on these messages (its ``raise_exception``).
    """
    specials = {f"{role}_token": token for role, token in getattr(tokenizer, "special_tokens", {}).items()}
    try:
        return _compiled(chat_template(tokenizer)).render(messages=messages, tools=None, documents=None,
                                                         add_generation_prompt=add_generation_prompt, **specials)
    except jinja2.TemplateError as err:
        raise UerError(f"chat template: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else err!r}") from None


def assistant_spans(messages: list[dict], tokenizer) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans ``[start, end)`` of its assistant turns.

    Turn ``i`` (an assistant message) spans from the end of the rendering of ``messages[:i]`` with the
    generation prompt to the end of the rendering of ``messages[:i + 1]``.

    Raises:
        UerError: the template fails (:func:`render_chat`), or it renders a conversation's beginning
            differently from the beginning of the whole conversation, so the turns cannot be located.
    """
    text = render_chat(messages, tokenizer)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt = render_chat(messages[:i], tokenizer, add_generation_prompt=True)
        turn = render_chat(messages[:i + 1], tokenizer)
        if not (turn.startswith(prompt) and text.startswith(turn)):
            raise UerError(f"chat template: the rendering of the first {i + 1} messages is not the beginning of "
                           "the whole conversation's, so the assistant tokens cannot be located")
        spans.append((len(prompt), len(turn)))
    return text, spans
