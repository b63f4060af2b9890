"""Labelled images for image classification pretraining (processor ``image``, ViT: Dosovitskiy et al. 2021).

The source (``data.corpus``) is one of:

- a TSV file of ``label<TAB>image_path`` lines, paths relative to the TSV's folder (an optional
  header line ``label<TAB>image_path`` is skipped);
- a folder with one subfolder per label holding the images (files with an extension Pillow knows);
- None: scikit-learn's ``load_digits()`` (1,797 8x8 grayscale digits, values 0..16 scaled to 0..255),
  label names "0".."9".

Label names are sorted and a label is its index in that list. Every image is decoded with Pillow
(an image that does not decode raises UerError naming the file) and stored re-encoded as PNG; grayscale
stays ``L``, every other mode becomes ``RGB``. Resizing to the model's size happens in the collator,
so no tokenizer or length applies here.

Row columns: ``image`` (PNG bytes), ``label`` (int64).
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Iterator

import numpy as np
import pyarrow as pa
from PIL import Image

from uer.errors import UerError
from uer.preprocess.processor import Plan, Processor

IMAGES_PER_SHARD = 256


@dataclass
class ImageProcessor(Processor):
    """Processor ``image``: (image, label) rows from a TSV, a folder per label, or the digits."""

    schema: ClassVar[pa.Schema] = pa.schema([("image", pa.binary()), ("label", pa.int64())])
    uncached_keys: ClassVar[tuple[str, ...]] = (
        "corpus", "tokenizer", "num_proc", "seq_length", "corpus_format", "invalid_utf8")

    def tokenizer_spec(self) -> None:
        return None

    def plan(self) -> Plan:
        if self.corpus is None:
            from sklearn.datasets import load_digits  # slow to import: only when used

            digits = load_digits()  # shipped inside scikit-learn, never downloaded
            label_names = [str(i) for i in range(10)]
            pixels = np.round(digits.images * (255 / 16)).astype(np.uint8)
            items = [(image, int(label)) for image, label in zip(pixels, digits.target)]
        else:
            source = Path(self.corpus).expanduser()
            if source.is_dir():
                items, label_names = _scan_folder(source)
            elif source.is_file():
                items, label_names = _read_tsv(source)
            else:
                raise UerError(f"corpus {source}: not found (expected a label<TAB>image_path TSV or a folder)")
        shards = [items[i:i + IMAGES_PER_SHARD] for i in range(0, len(items), IMAGES_PER_SHARD)]
        stats = {"images": len(items), "labels": len(label_names)}
        return Plan(_digest(items, label_names), stats, shards, label_names)

    def generate(self, shard: list[tuple[str | np.ndarray, int]], tokenizer) -> Iterator[dict]:
        for source, label in shard:
            yield {"image": _png(source), "label": label}


def _scan_folder(folder: Path) -> tuple[list[tuple[str, int]], list[str]]:
    extensions = set(Image.registered_extensions())
    labels = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not labels:
        raise UerError(f"corpus {folder}: no label subfolders (expected <folder>/<label>/<image>)")
    items = [(str(path), index) for index, label in enumerate(labels)
             for path in sorted((folder / label).iterdir())
             if path.is_file() and path.suffix.lower() in extensions]
    if not items:
        raise UerError(f"corpus {folder}: no image files in its label subfolders")
    return items, labels


def _read_tsv(tsv: Path) -> tuple[list[tuple[str, int]], list[str]]:
    try:
        lines = tsv.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError:
        raise UerError(f"corpus {tsv}: not a UTF-8 text file") from None
    except OSError as err:
        raise UerError(f"corpus {tsv}: cannot read ({err.strerror or err})") from None
    rows = []
    for lineno, line in enumerate(lines, 1):
        if not line.strip() or (lineno == 1 and line.strip().lower() == "label\timage_path"):
            continue
        fields = line.split("\t")
        if len(fields) != 2 or not fields[0].strip() or not fields[1].strip():
            raise UerError(f"corpus {tsv}: line {lineno} is not label<TAB>image_path")
        path = tsv.parent / fields[1].strip()
        if not path.is_file():
            raise UerError(f"corpus {tsv}: line {lineno}: image {path} not found")
        rows.append((fields[0].strip(), str(path)))
    if not rows:
        raise UerError(f"corpus {tsv}: no images listed")
    labels = sorted({label for label, _ in rows})
    index = {label: i for i, label in enumerate(labels)}
    return [(path, index[label]) for label, path in rows], labels


def _digest(items: list[tuple[str | np.ndarray, int]], label_names: list[str]) -> str:
    """sha256 over the label names and every (label, image bytes) in order."""
    digest = hashlib.sha256("\0".join(label_names).encode())
    for source, label in items:
        digest.update(f"\0{label}\0".encode())
        if isinstance(source, np.ndarray):
            digest.update(source.tobytes())
            continue
        try:
            digest.update(Path(source).read_bytes())
        except OSError as err:
            raise UerError(f"image {source}: cannot read ({err.strerror or err})") from None
    return digest.hexdigest()


def _png(source: str | np.ndarray) -> bytes:
    """PNG bytes of an image file (decoded and re-encoded) or of a uint8 array (H, W) / (H, W, 3)."""
    buffer = io.BytesIO()
    if isinstance(source, np.ndarray):
        Image.fromarray(source).save(buffer, format="PNG")
        return buffer.getvalue()
    try:
        with Image.open(source) as image:
            image.load()
            (image if image.mode in ("L", "RGB") else image.convert("RGB")).save(buffer, format="PNG")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise UerError(f"image {source}: cannot be decoded ({type(err).__name__}: {err})") from None
    return buffer.getvalue()
