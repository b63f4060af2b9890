"""``uer-generate CHECKPOINT (--prompt TEXT ... | --input FILE) [--output FILE] [options]``: text from
a causal LM or encoder-decoder checkpoint, one output line per prompt."""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from uer.cli.common import run_command, write_lines
from uer.errors import UerError

DESCRIPTION = """Generates text with a uer checkpoint (or a Hugging Face model directory, converted on the
fly): a causal LM (gpt2 presets) continues each prompt, an encoder-decoder (t5, bart) maps each
source line to an output. Prompts come from --prompt (repeatable) or --input (one per line); the
outputs, decoded up to the end-of-text token, go to stdout or --output, one line per prompt, in
order. A causal LM prompt is started with the tokenizer's bos token, as documents are in training.
With --chat each prompt is a conversation rendered by the tokenizer's chat template (Jinja, from its
tokenizer_config.json; a documented default without one, see uer.data.chat) up to where the assistant
answers: a plain prompt is one user message, a prompt that starts with "[" a JSON list of messages
[{"role": "system" | "user" | "assistant", "content": "..."}, ...]."""

EPILOG = """examples:
  uer-generate outputs/gpt2_tiny/<run>/checkpoints/step_0000030 --prompt "In the beginning"
  uer-generate CKPT --input prompts.txt --output out.txt --strategy beam --num-beams 4
  uer-generate CKPT --prompt "And God said" --strategy sample --top-p 0.9 --temperature 0.8 --seed 1
  uer-generate SFT_CKPT --chat --prompt "Is this review positive or negative? ..."
  uer-generate SFT_CKPT --chat --prompt '[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]'"""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="uer-generate", description=DESCRIPTION, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="a uer checkpoint directory or a Hugging Face model directory")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--prompt", action="append", metavar="TEXT", help="a prompt (repeat for several)")
    source.add_argument("--input", metavar="FILE", help="a UTF-8 file with one prompt per line")
    p.add_argument("--output", metavar="FILE", help="write the outputs here instead of stdout")
    p.add_argument("--chat", action="store_true",
                   help="render each prompt (a user message, or a JSON list of messages) with the chat template")
    p.add_argument("--strategy", choices=("greedy", "beam", "sample"), default="greedy")
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--num-beams", type=int, default=4, help="beam width (--strategy beam)")
    p.add_argument("--length-penalty", type=float, default=1.0,
                   help="beam score = sum log p / length ** this (> 0 favours longer outputs)")
    p.add_argument("--temperature", type=float, default=1.0, help="(--strategy sample)")
    p.add_argument("--top-k", type=int, default=None, help="sample among the k most probable tokens")
    p.add_argument("--top-p", type=float, default=None, help="sample among the smallest set with mass >= p")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampling generator")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:1 ...")
    p.add_argument("--decoder-start-token-id", type=int, default=None, metavar="ID",
                   help="first decoder input of an encoder-decoder (default: from the checkpoint)")
    p.add_argument("--no-cache", action="store_true", help="recompute the whole sequence each step (slow)")
    p.add_argument("--allow-target", action="append", default=[], metavar="PREFIX",
                   help="trust classes under this _target_ prefix in the checkpoint config (besides uer.)")
    return p


def read_prompts(path: str) -> list[str]:
    """The lines of a UTF-8 prompt file.

    Raises:
        UerError: missing, unreadable, not UTF-8 or without lines.
    """
    try:
        lines = Path(path).read_text(encoding="utf-8-sig").splitlines()  # without a byte order mark
    except FileNotFoundError:
        raise UerError(f"--input {path}: no such file") from None
    except UnicodeDecodeError as e:
        raise UerError(f"--input {path}: not UTF-8 (byte {e.start})") from None
    except OSError as e:
        raise UerError(f"--input {path}: cannot read ({e.strerror})") from None
    if not lines:
        raise UerError(f"--input {path}: no prompts (the file is empty)")
    return lines


def chat_messages(prompt: str, number: int) -> list[dict]:
    """The conversation of ``--chat`` prompt ``number`` (1-based): a JSON list of ``{"role", "content"}``
    messages when the prompt starts with ``[``, else one user message.

    Raises:
        UerError: invalid JSON, or not a list of messages with string roles and contents.
    """
    if not prompt.lstrip().startswith("["):
        return [{"role": "user", "content": prompt}]
    try:
        messages = json.loads(prompt)
    except json.JSONDecodeError as e:
        raise UerError(f"--chat prompt {number}: invalid JSON ({e.msg}, column {e.colno})") from None
    if not messages or not all(isinstance(m, dict) and isinstance(m.get("role"), str) and
                               isinstance(m.get("content"), str) for m in messages):
        raise UerError(f"--chat prompt {number}: expected a list of {{\"role\": ..., \"content\": ...}} messages "
                       "with string values")
    return messages


def check_numbers(options: argparse.Namespace) -> None:
    """Raise :class:`UerError` naming the option for a NaN or infinite ``--temperature`` or
    ``--length-penalty``, a ``--seed`` outside [0, 2**32) or a negative ``--decoder-start-token-id``
    (the other ranges are checked where they are used)."""
    for name in ("temperature", "length_penalty"):
        if not math.isfinite(getattr(options, name)):
            raise UerError(f"--{name.replace('_', '-')}={getattr(options, name)}: must be a finite number")
    if not 0 <= options.seed < 2**32:
        raise UerError(f"--seed={options.seed}: must be >= 0 and < 2**32")
    if options.decoder_start_token_id is not None and options.decoder_start_token_id < 0:
        raise UerError(f"--decoder-start-token-id={options.decoder_start_token_id}: must be a token id >= 0")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv

    def job(args):
        options = parser().parse_args(args)
        check_numbers(options)
        prompts = options.prompt if options.prompt else read_prompts(options.input)
        # lazy, deliberately: torch loads only past --help and a bad prompt file (0.1 s instead of 2-3 s)
        from uer.generation.text import generate_text, load_generator  # lazy
        from uer.train.config import check_device  # lazy
        from uer.train.trainer import pick_device  # lazy

        check_device(options.device, "--device")

        conversations = [chat_messages(p, i) for i, p in enumerate(prompts, 1)] if options.chat else None
        model, tokenizer, start = load_generator(options.checkpoint, options.allow_target)
        if conversations is not None:
            from uer.data.chat import render_chat  # lazy: as the imports above

            prompts = [render_chat(m, tokenizer, add_generation_prompt=True) for m in conversations]
        if options.decoder_start_token_id is not None:
            start = options.decoder_start_token_id
        outputs = generate_text(
            model, tokenizer, prompts, batch_size=options.batch_size, device=pick_device(options.device),
            decoder_start_token_id=start, add_bos=not options.chat,
            max_new_tokens=options.max_new_tokens, strategy=options.strategy, num_beams=options.num_beams,
            length_penalty=options.length_penalty, temperature=options.temperature, top_k=options.top_k,
            top_p=options.top_p, seed=options.seed, use_cache=not options.no_cache)
        write_lines(outputs, options.output)
        return 0

    return run_command(job, argv)


if __name__ == "__main__":
    sys.exit(main())
