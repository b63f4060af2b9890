"""Data processors and collators named by ``_target_`` (conf/data/*.yaml): every shipped data config
builds both, a ``_target_`` outside the allowed prefixes is refused in one line, and a user's own
collator, defined here and trusted through ``trainer.allowed_targets``, trains a tiny model without
any change to uer."""
from __future__ import annotations

import importlib.resources
import json

import numpy as np
import pytest
import torch
from checks import one_line_error
from uer.cli.preprocess import main as preprocess_main
from uer.preprocess.build import META_FILE, build_dataset, load_dataset_dir
from uer.preprocess.processor import Processor
from uer.preprocess.registry import options_from_config

from uer.config import compose_config, presets, resolve
from uer.data.collators import check_keys, make_collator, shipped_data_config, target_class
from uer.data.masking import MaskedLm
from uer.data.tokenizer import Tokenizer
from uer.errors import UerError
from uer.train.run import prepare, pretrain

DATA_CONFIGS = sorted(p.name[:-5] for p in (importlib.resources.files("uer.conf") / "data").iterdir()
                      if p.name.endswith(".yaml"))
PRESET_FOR = {"image": "vit_tiny", "mt": "transformer_tiny", "t5": "t5_tiny", "bart": "bart_tiny",
              "gsg": "bart_tiny", "lm": "gpt2_tiny", "prefixlm": "gpt2_tiny", "image_text": "clip_tiny",
              "mim": "beit_tiny", "vilt": "vilt_tiny", "wav2vec2": "wav2vec2_tiny"}
"""A preset that fits each data config (others: bert_tiny)."""
FAST = ["trainer.progress=false", "trainer.eval_every=0", "data.eval_samples=4", "data.num_proc=1",
        "data.seq_length=32", "data.batch_size=4", "trainer.save_every=0", "trainer.log_every=1"]


class CountingMlm(MaskedLm):
    """A user's objective: MLM that also counts its batches; ``mask_prob`` comes from a new key
    ``data.user_mask_prob`` that uer has never heard of."""

    batches = 0

    def __init__(self, tokenizer, user_mask_prob: float):
        super().__init__(tokenizer, user_mask_prob)

    def __call__(self, rows, rngs):
        type(self).batches += 1
        return super().__call__(rows, rngs)


def tokenizer_for(name: str) -> Tokenizer:
    tokenizer = Tokenizer.load("builtin:kjv-bpe" if name in ("lm", "prefixlm") else "builtin:kjv-wordpiece")
    tokenizer.add_sentinels()
    if name == "mt":
        tokenizer.target = Tokenizer.load("builtin:kjv-wordpiece")
    return tokenizer


@pytest.mark.parametrize("name", DATA_CONFIGS)
def test_every_shipped_data_config_builds_its_processor_and_collator(name, tmp_path):
    cfg = compose_config([f"+model={PRESET_FOR.get(name, 'bert_tiny')}", f"data={name}"])
    for key, value in (("vocab_size", 9000), ("num_labels", 3)):
        if key in cfg.model:
            cfg.model[key] = value
    if name == "mt":
        (tmp_path / "pairs.tsv").write_text("the king\tle roi\n", encoding="utf-8")
        cfg.data.corpus = str(tmp_path / "pairs.tsv")
    data = resolve(cfg).data
    processor = options_from_config(data)
    assert isinstance(processor, Processor) and processor.target == data.processor._target_
    collator = make_collator(data, tokenizer_for(name))
    assert f"{type(collator).__module__}.{type(collator).__qualname__}" == data.collator._target_


@pytest.mark.parametrize("preset", presets())
def test_every_preset_data_section_has_only_keys_its_classes_read(preset):
    data = compose_config([f"+model={preset}"]).data
    check_keys(data, target_class(data, "processor"), target_class(data, "collator"))


@pytest.mark.parametrize("key", ["processor", "collator"])
def test_a_hostile_data_target_is_refused_in_one_line(key, tmp_path, small_corpus):
    args = ["+model=bert_tiny", f"data.corpus={small_corpus}", f"trainer.output_dir={tmp_path / 'out'}", *FAST]
    one_line_error(lambda: prepare(compose_config(args + [f"data.{key}._target_=os.system"])),
                   f"data.{key}._target_=os.system", "allowed packages", "trainer.allowed_targets")
    # a path under uer. that reaches os.system through a module's imports
    sneaky = "uer.data.collators.inspect.os.system"
    one_line_error(lambda: prepare(compose_config(args + [f"data.{key}._target_={sneaky}"])),
                   f"data.{key}._target_={sneaky}", "not a class defined under")
    one_line_error(lambda: prepare(compose_config(args + [f"data.{key}.mask_prob=0.2"])),
                   f"data.{key}.mask_prob", "flat keys")
    assert not (tmp_path / "out").exists()
    # uer-preprocess refuses it the same way (exit 2) and writes nothing
    assert preprocess_main(["data=mlm", f"data.corpus={small_corpus}", f"data.{key}._target_=os.system",
                            f"output={tmp_path / 'ds'}"]) == 2
    assert not (tmp_path / "ds").exists()


def test_a_processor_target_must_be_a_processor():
    cfg = shipped_data_config("mlm", processor={"_target_": "uer.data.masking.MaskedLm"})
    one_line_error(lambda: options_from_config(cfg), "data.processor._target_=uer.data.masking.MaskedLm",
                   "not a subclass")


def test_a_user_collator_trains_a_tiny_model_without_editing_uer(tmp_path, small_corpus):
    here = f"{__name__}."
    args = ["+model=bert_tiny", "model/target=mlm", "data=mlm", f"data.corpus={small_corpus}",
            f"trainer.output_dir={tmp_path / 'out'}", "trainer.max_steps=3", *FAST, f"data.collator._target_={here}CountingMlm",
            "data.user_mask_prob=0.5", "~data.mask_prob"]
    one_line_error(lambda: prepare(compose_config(args)), here, "trainer.allowed_targets")
    CountingMlm.batches = 0
    metrics = pretrain(compose_config(args + [f"trainer.allowed_targets=[{here}]"]))
    assert CountingMlm.batches >= 3 and np.isfinite(metrics["loss"])
    rows = [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    assert len([row for row in rows if row["split"] == "train"]) == 3
    # its key reaches it by name: half the tokens of a row are predicted
    tokenizer = Tokenizer.load("builtin:kjv-wordpiece")
    cfg = shipped_data_config("mlm", collator={"_target_": f"{here}CountingMlm"}, user_mask_prob=0.5)
    collator = make_collator(cfg, tokenizer, ("uer.", here))
    ids = [tokenizer.cls_token_id, *range(1000, 1020), tokenizer.sep_token_id]
    batch = collator({"input_ids": [ids]}, [np.random.default_rng(0)])
    assert int((batch["labels"] != -100).sum()) == 10 and torch.equal(batch["labels"][0, [0, -1]],
                                                                       torch.tensor([-100, -100]))


def test_a_misspelled_data_key_lists_what_the_processor_and_collator_read():
    with pytest.raises(UerError) as err:
        options_from_config(shipped_data_config("bert", mask_prb=0.2))
    message = str(err.value)
    assert "unknown key data.mask_prb" in message and "mask_prob" in message and "short_seq_prob" in message
    assert "\n" not in message


def test_cache_key_follows_the_processor_class_and_options():
    def key(name, **overrides):
        return json.dumps(options_from_config(shipped_data_config(name, **overrides)).cache_options(), sort_keys=True)

    assert key("bert") == key("bert") != key("albert")  # same options, another class: NSP vs SOP rows
    assert key("bart") == key("gsg")  # one processor, two collators: the same rows, one cache entry
    assert key("bert") != key("bert", seq_length=64) and key("bert") == key("bert", mask_prob=0.3, num_proc=4)


def test_a_dataset_written_before_targets_still_trains(tmp_path, small_corpus):
    out = build_dataset(options_from_config(shipped_data_config("mlm", corpus=str(small_corpus), num_proc=1,
                                                                seq_length=32)), output_dir=tmp_path / "ds")
    meta = json.loads((out / META_FILE).read_text())
    meta["processor"] = "mlm"  # what uer-preprocess recorded when processors had names
    meta["options"] = {"processor": "mlm", **{k: v for k, v in meta["options"].items() if k != "processor"}}
    (out / META_FILE).write_text(json.dumps(meta))
    dataset, loaded, _ = load_dataset_dir(out)
    assert loaded["processor"] == "mlm" and len(dataset) == meta["num_rows"]
    metrics = pretrain(compose_config(["+model=bert_tiny", "model/target=mlm", "data=mlm", f"data.dataset={out}",
                                       "trainer.max_steps=2", f"trainer.output_dir={tmp_path / 'run'}", *FAST]))
    assert np.isfinite(metrics["loss"])
