"""What the fine-tuning tasks share on the data side: reading a TSV with a header, feature columns
(:class:`Rows`) that :class:`~uer.data.loader.BatchLoader` batches, padding them (:class:`Collator`),
``[CLS] a [SEP] b [SEP]`` inputs, and batched prediction with a progress bar."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from uer.data.loader import BatchLoader
from uer.data.padding import pad
from uer.data.tokenizer import Tokenizer
from uer.errors import UerError
from uer.train.metrics import Evaluation
from uer.train.trainer import DTYPES


def read_text(path: str | Path) -> str:
    """The text of the UTF-8 file ``path``, without a leading byte order mark (as Windows editors
    write one), so a TSV header or a labels file reads the same with or without it.

    Raises:
        UerError: a missing file, a directory, an unreadable file or one that is not UTF-8.
    """
    path = Path(path)
    if path.is_dir():
        raise UerError(f"{path}: is a directory, expected a file")
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise UerError(f"{path}: no such file") from None
    except UnicodeDecodeError as e:
        raise UerError(f"{path}: not UTF-8 ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise UerError(f"{path}: cannot read ({e.strerror or e})") from None


def read_tsv(path: str | Path, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> list[dict[str, str]]:
    """Rows of a UTF-8 TSV file whose first line names the columns (``label<TAB>text_a`` ...), as
    dicts holding the ``required`` columns and those of ``optional`` that the header has (a byte
    order mark before the header is dropped, see :func:`read_text`).

    Raises:
        UerError: a missing or unreadable file, a header without a required column or naming one
            twice, or a line with another number of fields than the header (the message names the
            file and line).
    """
    path = Path(path)
    lines = read_text(path).splitlines()
    if not lines:
        raise UerError(f"{path}: empty file; expected a header line naming the columns")
    header = lines[0].split("\t")
    missing = [c for c in required if c not in header]
    if missing:
        raise UerError(f"{path}: header {header} has no column {missing[0]!r} (needs {', '.join(required)})")
    keep = [c for c in (*required, *optional) if c in header]
    twice = [c for c in keep if header.count(c) > 1]
    if twice:
        raise UerError(f"{path}: header {header} names the column {twice[0]!r} twice")
    where = {c: header.index(c) for c in keep}
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != len(header):
            raise UerError(f"{path}:{number}: {len(fields)} fields, the header has {len(header)} ({', '.join(header)})")
        rows.append({c: fields[i] for c, i in where.items()})
    return rows


def distinct(labels: list[str], path) -> list[str]:
    """``labels`` unchanged if no label repeats (each must name one class id).

    Raises:
        UerError: a repeated label in the labels file ``path`` (named with the label).
    """
    seen = set()
    for label in labels:
        if label in seen:
            raise UerError(f"task.labels={path}: label {label!r} appears twice; each label must be listed once")
        seen.add(label)
    return labels


class Rows:
    """Feature columns (name -> list, one entry per row) indexable the way :class:`BatchLoader` reads
    a dataset: ``rows[[i, j]] -> {name: [row i, row j]}``."""

    def __init__(self, columns: dict[str, list]):
        self.columns = columns

    def __len__(self) -> int:
        return len(next(iter(self.columns.values())))

    def __getitem__(self, indices: list[int]) -> dict[str, list]:
        return {k: [v[i] for i in indices] for k, v in self.columns.items()}


@dataclass
class Collator:
    """Pads ``input_ids`` with ``pad_id`` and ``token_type_ids`` with 0 into (B, S) tensors with an
    ``attention_mask``; per-token ``labels`` are padded with -100; every other column is (B,)."""

    pad_id: int

    def __call__(self, columns: dict[str, list], _rngs=None) -> dict[str, torch.Tensor]:
        ids, mask = pad(columns["input_ids"], self.pad_id)
        batch = {"input_ids": torch.from_numpy(ids)}
        if mask is not None:
            batch["attention_mask"] = torch.from_numpy(mask)
        for name, values in columns.items():
            if name == "input_ids":
                continue
            if isinstance(values[0], list):
                batch[name] = torch.from_numpy(pad(values, -100 if name == "labels" else 0)[0])
            else:
                batch[name] = torch.tensor(values)
        return batch


def segments(model_cfg: DictConfig) -> int:
    """Segment (token type) ids the model has: 0 without a segment embedding."""
    return OmegaConf.select(model_cfg, "embedding.parts.segment.num_segments", default=0) or 0


def with_specials(tokenizer: Tokenizer, a: list[int], b: list[int] | None, length: int,
                  num_segments: int) -> dict[str, list[int]]:
    """``[CLS] a [SEP] (b [SEP])`` cut to ``length`` tokens (the longer part shortened first), with
    ``token_type_ids`` 0 for a and 1 for b when the model has two segments."""
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    if cls is None or sep is None:
        raise UerError("the tokenizer has no [CLS]/[SEP] tokens, which classification inputs need")
    a, b = list(a), list(b) if b is not None else None
    room = length - 2 - (b is not None)
    while len(a) + len(b or []) > room:
        (a if len(a) >= len(b or []) else b).pop()
    ids = [cls, *a, sep] + ([*b, sep] if b is not None else [])
    out = {"input_ids": ids}
    if num_segments:
        second = 1 if num_segments > 1 else 0
        out["token_type_ids"] = [0] * (len(a) + 2) + [second] * (len(ids) - len(a) - 2)
    return out


@torch.no_grad()
def predict(model, rows: Rows, collate: Collator, batch_size: int, head, device=None, desc: str = "predict",
            progress: bool = True, precision: str = "fp32", evaluation: Evaluation | None = None) -> list[np.ndarray]:
    """``head(model, hidden (B, S, D), batch) -> (B, ...)`` for every row, in order, with a progress
    bar; returns one array per row (float32). ``precision`` (fp32 | bf16 | fp16, the trainer's) sets
    the autocast dtype of the forward, as in training. With ``evaluation`` (rows with labels), the
    model's target also scores each batch from the same encoder pass, so the loss and target metrics
    cost no second pass. The model is left in eval mode."""
    model.eval()
    device = torch.device(device or next(model.parameters()).device)
    autocast = (torch.autocast(device.type, dtype=DTYPES[precision]) if precision != "fp32"
                else contextlib.nullcontext())
    loader = BatchLoader(rows, np.arange(len(rows)), collate, batch_size, shuffle=False, drop_last=False)
    out = []
    for batch in tqdm(loader.epoch_batches(0), total=len(loader), desc=desc, disable=not progress, leave=False):
        batch = {k: v.to(device) for k, v in batch.items()}
        with autocast:
            hidden, _ = model.encode(batch)
            logits = head(model, hidden, batch)
            if evaluation is not None:
                evaluation.add(model.target(hidden, batch))
        out.extend(logits.float().cpu().numpy())
    return out


def checkpoint_precision(cfg: DictConfig) -> str:
    """The training precision recorded in a fine-tuned checkpoint's run config (fp32 if none)."""
    return OmegaConf.select(cfg, "trainer.precision", default="fp32")
