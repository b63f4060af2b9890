"""Fine-tune a wav2vec 2.0 body with CTC on transcribed recordings and report the word and character
error rates (WER, CER; computed with ``jiwer``) on the dev and test manifests (Baevski et al. 2020,
"wav2vec 2.0", §4.3: a linear CTC head on the Transformer's frames, characters as the vocabulary,
the convolutional feature encoder not trained).

    python examples/speech/train.py trainer.init_from=<uer checkpoint or HF dir> task.train=train.tsv task.dev=dev.tsv
    python examples/speech/train.py +model=ctc_tiny task.train=... task.dev=...      # the same model, random init

The checkpoint is a ``uer-pretrain +model=wav2vec2_tiny`` (or ``wav2vec2_base``) run, or a Hugging
Face ``Wav2Vec2ForPreTraining``/``Wav2Vec2Model``/``Wav2Vec2ForCTC`` directory: its embedding and
encoder are kept (:func:`~examples.finetune.load_body`), the CTC head is new (``conf/model/target/ctc.yaml``,
blank = the tokenizer's pad), over the characters of the training transcripts (``task.tokenizer``).
The manifests are read as ``uer-pretrain`` reads them (``data=speech_ctc``: 16 kHz waveforms,
normalized per utterance; cached). ``task.train_fraction`` of the training recordings (a seeded draw)
are used. The best dev checkpoint (by word accuracy 1 - WER) is kept in ``<output_dir>/best``; its
transcripts go to ``<output_dir>/<split>_transcripts.txt``, one line per recording in manifest order.
"""
from __future__ import annotations

import importlib.resources
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root, for `examples.*`

import jiwer
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from examples.finetune import (
    FinetuneConfig,
    best_model,
    build_task_model,
    callbacks,
    compose_recipe,
    finetune_config,
    script_main,
)
from uer.cli.common import write_lines
from uer.data.audio import read_manifest
from uer.data.loader import BatchLoader
from uer.data.speech import WaveformCollator
from uer.data.wav2vec2 import Wav2Vec2Collator
from uer.errors import UerError
from uer.generation.ctc import ctc_transcripts
from uer.generation.speech import ctc_part
from uer.train.assemble import Data, build_trainer, settings
from uer.train.run import load_data, resume_point

HERE = Path(__file__).resolve().parent


def error_rates(references: list[str], hypotheses: list[str]) -> dict[str, float]:
    """``wer`` and ``cer`` of the ``hypotheses`` against the ``references`` (jiwer: edit operations
    summed over the corpus, divided by the reference words / characters), and ``wacc`` = 1 - WER
    (word accuracy, HTK's "Acc"; higher is better, what the best checkpoint follows). An empty
    hypothesis counts every reference word as deleted.

    Raises:
        UerError: lists of different lengths, or an empty reference (its error rate is undefined).
    """
    if len(references) != len(hypotheses):
        raise UerError(f"{len(references)} reference transcripts for {len(hypotheses)} hypotheses")
    if not references or not all(r.strip() for r in references):
        raise UerError("WER needs a non-empty reference transcript for every recording")
    wer = jiwer.wer(references, hypotheses)
    return {"wer": wer, "cer": jiwer.cer(references, hypotheses), "wacc": 1.0 - wer}


def data_config(task: DictConfig, manifest: str) -> DictConfig:
    """``conf/data/speech_ctc.yaml`` (the waveforms ``uer-pretrain`` trains CTC on) for one manifest."""
    cfg = OmegaConf.load(str(importlib.resources.files("uer.conf") / "data" / "speech_ctc.yaml"))
    cfg.merge_with({"corpus": manifest, "tokenizer": task.tokenizer, "num_proc": task.num_proc})
    return cfg


class Split:
    """One manifest's recordings as rows (``audio``, ``labels``: a ``datasets.Dataset`` in manifest
    order) and its reference transcripts, tokenized with ``tokenizer`` (None: the one
    ``task.tokenizer`` trains on this manifest, then :attr:`tokenizer`).

    Raises:
        UerError: a missing or bad manifest, an unreadable recording, a transcript too long.
    """

    def __init__(self, task: DictConfig, key: str, tokenizer=None):
        manifest = task.get(key)
        if not manifest:
            raise UerError(f"task.{key}: a manifest is required (a path<TAB>transcript TSV or a folder)")
        self.references = [text for _, text in read_manifest(manifest)]
        self.rows, _, self.tokenizer = load_data(data_config(task, str(manifest)), tokenizer)
        if len(self.rows) != len(self.references):
            raise UerError(f"task.{key}={manifest}: {len(self.rows)} rows for {len(self.references)} recordings")


def subset(n: int, fraction: float, seed: int, batch_size: int) -> np.ndarray:
    """Sorted ids of ``round(fraction · n)`` of ``n`` rows, drawn without replacement by a generator
    seeded with ``seed`` (the same subset for the same seed, whatever the model).

    Raises:
        UerError: ``fraction`` outside (0, 1], or fewer rows than one batch.
    """
    if not 0 < fraction <= 1:
        raise UerError(f"task.train_fraction={fraction}: must be in (0, 1]")
    count = round(fraction * n)
    if count < batch_size:
        raise UerError(f"task.train_fraction={fraction}: {count} of {n} recordings, fewer than one batch of "
                       f"{batch_size}; raise it or lower task.batch_size")
    return np.sort(np.random.default_rng([seed, 0x5EC]).permutation(n)[:count])


@torch.no_grad()
def transcribe(model, split: Split, blank_id: int, batch_size: int, beam: int) -> list[str]:
    """The transcript of every recording of ``split``, in order (best path, or prefix beam search of
    width ``beam``), whitespace collapsed."""
    model.eval()
    device = next(model.parameters()).device
    loader = BatchLoader(split.rows, np.arange(len(split.rows)), WaveformCollator(transcripts=False), batch_size,
                         shuffle=False, drop_last=False)
    out = []
    for batch in loader.epoch_batches(0):
        for ids in ctc_transcripts(model, {k: v.to(device) for k, v in batch.items()}, blank_id, beam):
            out.append(" ".join(split.tokenizer.decode(ids, skip_special_tokens=True).split()))
    return out


def train_collator(task: DictConfig, model_cfg: DictConfig):
    """Waveforms and CTC labels; with ``task.mask_prob`` > 0 also wav2vec 2.0's span mask
    (``mask_time_indices``, filled with the learned mask embedding; one unused distractor)."""
    if task.mask_prob <= 0:
        return WaveformCollator()
    return Wav2Vec2Collator(list(model_cfg.conv_kernel), list(model_cfg.conv_stride), mask_prob=task.mask_prob,
                            mask_length=task.mask_length, num_negatives=1, transcripts=True)


def build(cfg: DictConfig, model_args: list[str], tokenizer):
    """(model, resolved model config): the body of ``trainer.init_from`` or the preset of
    ``+model=`` with a fresh CTC head over ``tokenizer``'s ids, blank = its pad; the feature
    encoder frozen when ``task.freeze_feature_encoder``."""
    if tokenizer.pad_token_id is None:
        raise UerError("task.tokenizer: has no pad token, which CTC uses as its blank")
    ctc = [f"model.vocab_size={tokenizer.vocab_size}", f"model.blank_id={tokenizer.pad_token_id}",
           "model.ctc_reduction=mean"]
    model, model_cfg, _, _ = build_task_model(cfg, [*model_args, *ctc], "ctc", None, tokenizer)
    if "feature" not in getattr(model.embedding, "part_names", ()):
        raise UerError("the model has no waveform feature encoder (embedding part 'feature'): not a wav2vec 2.0 body")
    if cfg.task.freeze_feature_encoder:
        model.embedding.feature.requires_grad_(False)
    return model, model_cfg


def run(argv: list[str]) -> dict[str, float]:
    """Fine-tune, keep the best dev checkpoint, write its transcripts, return ``dev/*`` and
    ``test/*`` (``wer``, ``cer``, ``wacc``).

    Raises:
        UerError: bad configuration or input.
    """
    cfg, model_args = compose_recipe(HERE, argv)
    ft: FinetuneConfig = finetune_config(cfg)
    task = cfg.task
    if ft.class_weights is not None:
        raise UerError("finetune.class_weights: the CTC head has no class weights")
    train = Split(task, "train")
    splits = {s: Split(task, s, train.tokenizer) for s in ("dev", "test") if s == "dev" or task.get(s)}
    model, model_cfg = build(cfg, model_args, train.tokenizer)
    blank = ctc_part(model).blank_id
    ids = subset(len(train.rows), task.train_fraction, task.seed, task.batch_size)
    per_epoch = len(ids) // task.batch_size
    cfg.trainer.max_steps = ft.max_steps or ft.epochs * per_epoch
    cfg.trainer.eval_every = ft.eval_every or per_epoch
    run_settings = settings(cfg)
    run_cfg = OmegaConf.create({"model": model_cfg, "task": task, "finetune": cfg.finetune,
                                "trainer": OmegaConf.structured(run_settings.trainer), "optim": cfg.optim,
                                "scheduler": cfg.scheduler, "data": {"normalize": True}})

    def evaluate(trainer) -> dict[str, float]:
        dev = splits["dev"]
        return error_rates(dev.references, transcribe(trainer.model, dev, blank, task.batch_size, 1))

    dev_rows = Data(splits["dev"].rows, np.arange(len(splits["dev"].rows)), WaveformCollator(), task.batch_size)
    trainer = build_trainer(model, run_settings, run_cfg, train.tokenizer,
                            Data(train.rows, ids, train_collator(task, model_cfg), task.batch_size), dev_rows,
                            evaluator=evaluate, callbacks=callbacks(ft, model), layer_decay=ft.layer_decay,
                            resume_from=resume_point(run_settings.trainer, model_cfg))
    trainer.fit()
    model = best_model(trainer)
    result = {}
    for name, split in splits.items():
        lines = transcribe(model, split, blank, task.batch_size, task.beam)
        write_lines(lines, str(Path(trainer.output_dir) / f"{name}_transcripts.txt"))
        result.update({f"{name}/{k}": v for k, v in error_rates(split.references, lines).items()})
    print(f"{len(ids)} training recordings; " + " ".join(f"{k}={v:.4f}" for k, v in result.items()), flush=True)
    return result


def main(argv: list[str]) -> int:
    """``-h`` prints the usage and the config; otherwise :func:`run`, exit 0, or 2 with one ``error:`` line."""
    return script_main(run, __doc__, HERE, argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
