"""Command-line arguments of short pretraining runs on the test corpora, shared by the training tests."""
from __future__ import annotations

import functools
from pathlib import Path

from conftest import SHARED_DATA
from omegaconf import DictConfig, OmegaConf

from uer.config import compose_config

FAST = ["trainer.progress=false", "trainer.eval_every=0", "data.eval_samples=4", "data.num_proc=1"]
SPEECH_PROCESSORS = ("FbankProcessor", "WaveformProcessor")
"""Data processors that read recordings (a manifest as corpus)."""


@functools.cache
def composed(preset: str) -> DictConfig:
    """The run config of ``preset`` with the defaults (read-only: callers copy before changing it)."""
    cfg = compose_config([f"+model={preset}"])
    OmegaConf.set_readonly(cfg, True)
    return cfg


def processor_of(preset: str) -> str:
    """The class name of the data processor ``preset`` trains with."""
    return composed(preset).data.processor._target_.rsplit(".", 1)[1]


def run_args(preset: str, corpus: Path, out: Path, steps: int, *extra: str) -> list[str]:
    args = [f"+model={preset}", f"trainer.output_dir={out}", f"trainer.max_steps={steps}", *FAST]
    processor = processor_of(preset)
    if processor == "ParallelProcessor":  # a parallel corpus: English<TAB>Chinese
        args += [f"data.corpus={SHARED_DATA / 'corpora' / 'news-commentary-v13-en-zh_sampled.txt'}",
                 "data.seq_length=32", "data.vocab_size=2000"]
    elif processor in SPEECH_PROCESSORS:  # a speech manifest; transcripts keep data.seq_length's default
        args += [f"data.corpus={corpus}"]
    elif processor not in ("ImageProcessor", "ImageTextProcessor"):  # these default to the digits
        args += [f"data.corpus={corpus}", "data.seq_length=32"]
    return args + list(extra)
