"""Metric accumulation (per log window, per evaluation, throughput) and the run's outputs: JSONL lines
and TensorBoard scalars."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch

from uer.data.audio import SAMPLE_RATE
from uer.data.fbank import HOP_LENGTH
from uer.targets.output import Metric, TargetOutput
from uer.train import distributed


class MetricSums:
    """Adds (sum, count) metrics over steps on the device and reads them out only when asked, so
    the hot loop never waits for the device."""

    def __init__(self):
        self.sums: dict[str, list[torch.Tensor]] = {}

    def add(self, metrics: dict[str, Metric]) -> None:
        for name, (total, count) in metrics.items():
            total, count = total.detach().float(), count.detach().float()
            if name in self.sums:
                self.sums[name][0] += total
                self.sums[name][1] += count
            else:
                self.sums[name] = [total.clone(), count.clone()]

    def means(self) -> dict[str, float]:
        """name -> sum / count (one host transfer), then reset."""
        if not self.sums:
            return {}
        names = list(self.sums)
        values = torch.stack([torch.stack(self.sums[n]) for n in names]).cpu()
        self.sums = {}
        return {n: (v[0] / v[1]).item() if v[1] > 0 else float("nan") for n, v in zip(names, values)}


def batch_size_of(batch: dict[str, torch.Tensor]) -> tuple[int, int]:
    """(samples, real tokens) of a batch, from host tensors: tokens are unpadded ``input_ids``
    positions (0 for image batches)."""
    first = next(iter(batch.values()))
    if "input_ids" not in batch:
        return first.shape[0], 0
    mask = batch.get("attention_mask")
    return first.shape[0], int(mask.sum()) if mask is not None else batch["input_ids"].numel()


def audio_seconds_of(batch: dict[str, torch.Tensor]) -> float:
    """Seconds of real audio in a speech batch, from host tensors: ``attention_mask`` over 10 ms
    filter-bank frames (``input_features``, S2T) or over 16 kHz samples (``input_values``, wav2vec 2.0
    and CTC; every sample when there is no mask); 0.0 for any other batch."""
    mask = batch.get("attention_mask")
    if "input_features" in batch:
        frames = int(mask.sum()) if mask is not None else batch["input_features"].shape[:2].numel()
        return frames * HOP_LENGTH / SAMPLE_RATE
    if "input_values" in batch:
        return (int(mask.sum()) if mask is not None else batch["input_values"].numel()) / SAMPLE_RATE
    return 0.0


class Throughput:
    """Samples, real tokens (see :func:`batch_size_of`) and seconds of audio (see
    :func:`audio_seconds_of`) of this rank since the window started, and the wall-clock seconds it
    has lasted (``time.perf_counter``)."""

    def __init__(self):
        self.restart()

    def restart(self) -> None:
        self.start, self.samples, self.tokens, self.audio = time.perf_counter(), 0, 0, 0.0

    def add(self, batches: list[dict[str, torch.Tensor]]) -> None:
        for batch in batches:
            samples, tokens = batch_size_of(batch)
            self.samples += samples
            self.tokens += tokens
            self.audio += audio_seconds_of(batch)

    def read(self, device: torch.device) -> tuple[int, int, float, float]:
        """(samples, tokens, seconds of audio) of all ranks together (one all-reduce in a
        multi-process run) and the seconds since the window started (read first)."""
        elapsed = time.perf_counter() - self.start
        if distributed.world_size() == 1:
            return self.samples, self.tokens, self.audio, elapsed
        totals = distributed.all_reduce_(torch.tensor([self.samples, self.tokens, self.audio], device=device,
                                                      dtype=torch.float64)).tolist()
        return int(totals[0]), int(totals[1]), totals[2], elapsed


class Evaluation:
    """The loss and target metrics of a held-out pass, batch by batch: ``result()`` gives each
    metric's mean over all batches and ``loss``, Σ weight · ``<term>/loss`` over the objectives."""

    def __init__(self):
        self.sums = MetricSums()
        self.weights: dict[str, float] = {}

    def add(self, out: TargetOutput, counted: bool = True) -> None:
        """Add a batch's metrics; ``counted=False`` adds zeros (a filler batch some rank computes
        only to keep collectives in step)."""
        self.sums.add(out.metrics if counted else {k: (v[0] * 0, v[1] * 0) for k, v in out.metrics.items()})
        self.weights = {name: term.weight for name, term in out.terms.items()}

    def result(self) -> dict[str, float]:
        """Means (one host transfer), then reset."""
        result = self.sums.means()
        if self.weights:
            result["loss"] = sum(w * result[f"{name}/loss"] for name, w in self.weights.items())
        return result



def metrics_line(result: dict[str, float]) -> str:
    """``name=value`` pairs of ``result`` for a log line, 4 decimals, each figure once: a part's
    metric (``cls/acc``, ``lm/loss``) is left out where the unprefixed name (``acc``, the total
    ``loss`` of a single target) shows the same figure; metrics.jsonl keeps every key."""
    shown = {k: f"{v:.4f}" for k, v in result.items()}
    return " ".join(f"{k}={text}" for k, text in shown.items()
                    if "/" not in k or shown.get(k.rsplit("/", 1)[1]) != text)

class RunLog:
    """Appends records to ``<output_dir>/metrics.jsonl`` and TensorBoard event files in
    ``<output_dir>/tensorboard`` (tags ``<split>/<name>``).

    A run that starts at step ``start`` (resumed from a checkpoint, or 0) first drops the records of
    later steps that an earlier, crashed attempt logged past its last checkpoint, and a line cut off
    by the crash: ``metrics.jsonl`` is rewritten atomically (temp file, fsync, rename), and
    TensorBoard hides events from step ``start + 1`` on (``purge_step``). So no (step, split) pair
    appears twice however often a run is resumed.
    """

    def __init__(self, output_dir: Path, start: int = 0):
        from torch.utils.tensorboard import SummaryWriter  # lazy: loads tensorboard; rank 0 only

        self.path = Path(output_dir) / "metrics.jsonl"
        if self.path.is_file():
            keep_until(self.path, start)
        self.file = self.path.open("a", encoding="utf-8")
        self.writer = SummaryWriter(str(Path(output_dir) / "tensorboard"), purge_step=start + 1)

    def write(self, step: int, split: str, values: dict[str, float]) -> None:
        record = {"step": step, "split": split, "time": round(time.time(), 3), **values}
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        for name, value in values.items():
            self.writer.add_scalar(f"{split}/{name}", value, step)

    def close(self) -> None:
        self.file.close()
        self.writer.close()


def keep_until(path: Path, step: int) -> None:
    """Rewrite the JSON-lines file ``path`` atomically with only its complete records of steps <= ``step``."""
    kept = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line cut off by a crash
        if isinstance(record, dict) and isinstance(record.get("step"), int) and record["step"] <= step:
            kept.append(line + "\n")
    tmp = path.with_name(f".tmp-{path.name}")
    with tmp.open("w", encoding="utf-8") as f:
        f.writelines(kept)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
