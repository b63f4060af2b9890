"""Image-caption pairs for contrastive (CLIP, Radford et al. 2021) and single-stream (ViLT, Kim et al.
2021) vision-language pretraining (processor ``image_text``).

The source (``data.corpus``) is one of:

- a TSV file of ``image_path<TAB>caption`` lines (an optional header line ``image_path<TAB>caption``
  is skipped), or a JSONL file (suffix ``.jsonl``) of ``{"image_path": ..., "caption": ...}`` objects;
  paths relative to the file's folder;
- a folder of images, each with its caption in a ``.txt`` file of the same stem beside it
  (``cat.png`` + ``cat.txt``), searched recursively; images without a caption file are skipped;
- None: scikit-learn's ``load_digits()`` (1,797 8x8 grayscale digits, as processor ``image``), each
  captioned by one of :data:`DIGIT_TEMPLATES` drawn for it from ``random.Random(f"{seed}:{index}")``
  ("a handwritten seven", "the digit 7 written by hand", ...); labels are the digits and
  :func:`class_prompts` gives every template of every class for zero-shot classification;
- ``builtin:kjv-rendered``: King James verses rendered into images, each captioned by its own words
  (:mod:`uer.preprocess.rendered_text`; no classes).

Images are decoded and stored as PNG as processor ``image`` does (:mod:`uer.preprocess.images`);
captions are tokenized with the start and end special tokens of the tokenizer (``[CLS]`` ... ``[SEP]``
or ``<s>`` ... ``</s>``) and cut to ``seq_length`` tokens, the end token kept.

Row columns: ``image`` (PNG bytes), ``input_ids`` (int32 list), ``label`` (int64: the digit, -1 for a
user's pairs and the rendered verses).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Iterator

import numpy as np
import pyarrow as pa
from PIL import Image

from uer.data.text_files import read_lines
from uer.errors import UerError
from uer.preprocess.images import IMAGES_PER_SHARD, _digest, _png
from uer.preprocess.processor import TOKEN_IDS, Plan, Processor, special_id
from uer.preprocess.rendered_text import RENDERED_KJV, Rendering, rendered_pairs

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
DIGIT_TEMPLATES = (
    "a handwritten {word}",
    "the digit {digit} written by hand",
    "a photo of the number {word}",
    "a small blurry image of a {digit}",
    "the number {word} in black and white",
    "a scanned handwritten digit {digit}",
)
"""Caption templates of the digits; ``{word}`` is the digit's English name, ``{digit}`` its numeral."""


def digit_caption(label: int, template: int) -> str:
    """The caption of digit ``label`` (0-9) by template number ``template`` of :data:`DIGIT_TEMPLATES`."""
    return DIGIT_TEMPLATES[template].format(word=DIGIT_WORDS[label], digit=label)


def class_prompts() -> list[list[str]]:
    """Zero-shot prompts of the digits: ``prompts[label]`` = that digit's caption by every template
    (an ensemble of prompts per class, Radford et al. 2021 §3.1.4)."""
    return [[digit_caption(label, t) for t in range(len(DIGIT_TEMPLATES))] for label in range(len(DIGIT_WORDS))]


@dataclass
class ImageTextProcessor(Processor):
    """Processor ``image_text``: (image, caption tokens, label) rows from a TSV/JSONL, a folder of
    captioned images, or the captioned digits. ``seq_length`` caps the caption tokens, specials included."""

    schema: ClassVar[pa.Schema] = pa.schema([("image", pa.binary()), ("input_ids", TOKEN_IDS), ("label", pa.int64())])
    default_tokenizer: ClassVar[str | None] = "builtin:kjv-wordpiece"
    min_seq_length: ClassVar[int] = 3
    uncached_keys: ClassVar[tuple[str, ...]] = ("corpus", "tokenizer", "num_proc", "corpus_format", "invalid_utf8")

    def plan(self) -> Plan:
        label_names = None
        if self.corpus is None:
            from sklearn.datasets import load_digits  # slow to import: only when used

            digits = load_digits()  # shipped inside scikit-learn, never downloaded
            pixels = np.round(digits.images * (255 / 16)).astype(np.uint8)
            items = [(image, digit_caption(int(label), random.Random(f"{self.seed}:{i}").randrange(len(DIGIT_TEMPLATES))),
                      int(label)) for i, (image, label) in enumerate(zip(pixels, digits.target))]
            label_names = list(DIGIT_WORDS)
        elif self.corpus == RENDERED_KJV:
            items, digest = rendered_pairs(self.seed)
            return Plan(digest, {"pairs": len(items)}, _shards(items))
        else:
            source = Path(self.corpus).expanduser()
            if source.is_dir():
                pairs = _scan_folder(source)
            elif source.is_file():
                pairs = _read_jsonl(source) if source.suffix.lower() == ".jsonl" else _read_tsv(source)
            else:
                raise UerError(f"corpus {source}: not found (expected an image_path<TAB>caption TSV, a JSONL "
                               "or a folder of images with .txt captions)")
            items = [(path, caption, -1) for path, caption in pairs]
        digest = _digest([(source, label) for source, _, label in items], [caption for _, caption, _ in items])
        return Plan(digest, {"pairs": len(items)}, _shards(items), label_names)

    def generate(self, shard: list[tuple[str | np.ndarray | Rendering, str, int]], tokenizer) -> Iterator[dict]:
        captions = caption_ids(tokenizer, [caption for _, caption, _ in shard], self.seq_length)
        for (source, _, label), ids in zip(shard, captions):
            image = source.pixels() if isinstance(source, Rendering) else source
            yield {"image": _png(image), "input_ids": ids, "label": label}


def _shards(items: list) -> list[list]:
    """Consecutive shards of :data:`~uer.preprocess.images.IMAGES_PER_SHARD` items."""
    return [items[i:i + IMAGES_PER_SHARD] for i in range(0, len(items), IMAGES_PER_SHARD)]


def caption_ids(tokenizer, captions: list[str], seq_length: int) -> list[list[int]]:
    """Token ids of each caption between the tokenizer's start (cls or bos) and end (sep or eos)
    tokens, cut to ``seq_length`` ids with the end token kept.

    Raises:
        UerError: the tokenizer has no start or no end token.
    """
    start = special_id(tokenizer, ImageTextProcessor.__qualname__, "cls", "bos")
    end = special_id(tokenizer, ImageTextProcessor.__qualname__, "sep", "eos")
    return [[start, *ids[:seq_length - 2], end] for ids in tokenizer.encode_batch(captions)]


def _pair(where: str, path: str, caption: str, base: Path) -> tuple[str, str]:
    """(absolute image path, caption) after checking both; ``where`` names the line for errors."""
    if not path.strip() or not caption.strip():
        raise UerError(f"{where}: needs an image path and a non-empty caption")
    image = base / path.strip()
    if not image.is_file():
        raise UerError(f"{where}: image {image} not found")
    return str(image), caption.strip()


def _read_tsv(tsv: Path) -> list[tuple[str, str]]:
    pairs = []
    for lineno, line in enumerate(read_lines(tsv, "corpus"), 1):
        if not line.strip() or (lineno == 1 and line.strip().lower() == "image_path\tcaption"):
            continue
        fields = line.split("\t")
        if len(fields) != 2:
            raise UerError(f"corpus {tsv}: line {lineno} is not image_path<TAB>caption")
        pairs.append(_pair(f"corpus {tsv}: line {lineno}", *fields, tsv.parent))
    if not pairs:
        raise UerError(f"corpus {tsv}: no image-caption pairs listed")
    return pairs


def _read_jsonl(jsonl: Path) -> list[tuple[str, str]]:
    pairs = []
    for lineno, line in enumerate(read_lines(jsonl, "corpus"), 1):
        if not line.strip():
            continue
        where = f"corpus {jsonl}: line {lineno}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise UerError(f"{where}: not JSON ({err.msg})") from None
        if not isinstance(record, dict) or not all(isinstance(record.get(k), str) for k in ("image_path", "caption")):
            raise UerError(f'{where}: expected {{"image_path": "...", "caption": "..."}}')
        pairs.append(_pair(where, record["image_path"], record["caption"], jsonl.parent))
    if not pairs:
        raise UerError(f"corpus {jsonl}: no image-caption pairs listed")
    return pairs


def _scan_folder(folder: Path) -> list[tuple[str, str]]:
    extensions = set(Image.registered_extensions())
    pairs = []
    for path in sorted(folder.rglob("*")):
        caption_file = path.with_suffix(".txt")
        if path.is_file() and path.suffix.lower() in extensions and caption_file.is_file():
            text = " ".join(read_lines(caption_file, "corpus")).strip()
            pairs.append(_pair(f"corpus {folder}: {caption_file.name}", str(path), text, folder))
    if not pairs:
        raise UerError(f"corpus {folder}: no images with a caption file beside them (<name>.png + <name>.txt)")
    return pairs
