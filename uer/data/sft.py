"""Instruction-tuning (SFT) examples: JSONL records -> chat messages -> token ids and labels.

Two record formats, one JSON object per line:

- Alpaca (Taori et al. 2023): ``{"instruction": str, "input": str (optional), "output": str}``,
  read as the conversation ``user: instruction [+ "\\n\\n" + input], assistant: output``;
- chat: ``{"messages": [{"role": "system" | "user" | "assistant", "content": str}, ...]}`` with at
  least one assistant message (the OpenAI / Hugging Face chat format).

The conversation is rendered with the tokenizer's chat template (:mod:`uer.data.chat`) and tokenized
whole (no special tokens added: the template writes them). ``labels`` are the ids on the tokens of
the assistant turns (a token overlapping an assistant span counts, as transformers'
``return_assistant_tokens_mask`` decides) and -100 elsewhere, so the loss is on the answers only;
the end-of-turn tokens the template writes after an answer (eos) are targets too.
"""
from __future__ import annotations

import json

from uer.data.chat import assistant_spans
from uer.errors import UerError

ROLES = ("system", "user", "assistant")
"""Message roles a chat record may use."""


def record_messages(line: str, where: str) -> list[dict]:
    """The conversation of one JSONL line in Alpaca or chat format (see the module docstring).

    Args:
        line: the line's text.
        where: the line's place for messages, e.g. ``"corpus data.jsonl: line 3"``.

    Raises:
        UerError: naming ``where``: not JSON, not an object, in neither format, a missing or
            non-string field, an unknown role, or no assistant message.
    """
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        raise UerError(f"{where}: not JSON ({err.msg})") from None
    if isinstance(record, dict) and "messages" in record:
        return _chat(record["messages"], where)
    if isinstance(record, dict) and "instruction" in record:
        for key in ("instruction", "input", "output"):
            if key == "output" and key not in record:
                raise UerError(f'{where}: Alpaca record without "output" (the answer to learn)')
            if not isinstance(record.get(key, ""), str):
                raise UerError(f'{where}: "{key}" must be a string, got {type(record[key]).__name__}')
        prompt = record["instruction"] + (f"\n\n{record['input']}" if record.get("input") else "")
        return [{"role": "user", "content": prompt}, {"role": "assistant", "content": record["output"]}]
    raise UerError(f'{where}: neither an Alpaca record ("instruction", "input", "output") nor a chat record '
                   '("messages")')


def _chat(messages, where: str) -> list[dict]:
    if not isinstance(messages, list) or not messages:
        raise UerError(f'{where}: "messages" must be a non-empty list of {{"role", "content"}} objects')
    for n, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise UerError(f'{where}: message {n} needs a "role" of {", ".join(ROLES)}')
        if not isinstance(message.get("content"), str):
            raise UerError(f'{where}: message {n} "content" must be a string, got '
                           f'{type(message.get("content")).__name__}')
    if not any(message["role"] == "assistant" for message in messages):
        raise UerError(f"{where}: no assistant message (nothing to learn)")
    return [{"role": message["role"], "content": message["content"]} for message in messages]


def encode_chat(messages: list[dict], tokenizer) -> tuple[list[int], list[int]]:
    """``(input_ids, labels)``, two lists of the same length: the rendered conversation's token ids,
    and those ids on assistant tokens with -100 elsewhere.

    Raises:
        UerError: the chat template fails (see :func:`uer.data.chat.assistant_spans`).
    """
    text, spans = assistant_spans(messages, tokenizer)
    encoding = tokenizer.backend.encode(text, add_special_tokens=False)
    labels, span = [], 0
    for token, (start, end) in zip(encoding.ids, encoding.offsets):
        while span < len(spans) and start >= spans[span][1]:
            span += 1
        inside = span < len(spans) and end > spans[span][0]
        labels.append(token if inside else -100)
    return list(encoding.ids), labels
