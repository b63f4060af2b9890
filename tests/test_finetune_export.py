"""Fine-tuned task heads convert both ways with transformers' *ForSequenceClassification /
*ForTokenClassification / *ForQuestionAnswering (BERT, RoBERTa, ALBERT): the same logits (random
weights, odd sizes, padded batch, tolerances scaled to the magnitude), id2label kept, and the pipeline agrees with us."""
from __future__ import annotations

import json

import pytest
import torch
import transformers
from checks import assert_parity
from convert_cases import Case, batch, hf_config, hf_tokenizer, load_uer, same_tensors

from uer.convert import convert

HEADS = ("SequenceClassification", "TokenClassification", "QuestionAnswering")
NAMES = {"bert": "Bert", "roberta": "Roberta", "albert": "Albert"}
CASES = [Case(f, f"{n}For{h}", f"AutoModelFor{h}") for f, n in NAMES.items() for h in HEADS]
LABELS = ["neg", "neutral", "pos", "mixed", "other"]


def save_task_model(case: Case, directory, seed: int = 0):
    torch.manual_seed(seed)
    config = hf_config(case)
    if not case.architecture.endswith("QuestionAnswering"):
        config.id2label = dict(enumerate(LABELS))
        config.label2id = {n: i for i, n in enumerate(LABELS)}
    model = getattr(transformers, case.architecture)(config)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    model.eval().save_pretrained(directory)
    hf_tokenizer(case.family).save_pretrained(directory)
    return model


def uer_logits(model, fields):
    hidden, _ = model.encode(fields)
    (name,) = model.target.names
    return getattr(model.target, name).logits(hidden, fields)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.architecture)
def test_task_head_parity_and_round_trip(case, tmp_path):
    hf = save_task_model(case, tmp_path / "hf")
    convert(tmp_path / "hf", tmp_path / "uer")
    model = load_uer(tmp_path / "uer").eval()
    fields = {k: v for k, v in batch(case).items() if k in ("input_ids", "attention_mask", "token_type_ids")}
    real = fields["attention_mask"].bool()
    with torch.no_grad():
        ref = hf(**fields)
        ours = uer_logits(model, fields)
    if case.architecture.endswith("SequenceClassification"):
        assert_parity(ours, ref.logits)
    elif case.architecture.endswith("TokenClassification"):
        assert_parity(ours[real], ref.logits[real])
    else:
        assert_parity(ours[..., 0][real], ref.start_logits[real])
        assert_parity(ours[..., 1][real], ref.end_logits[real])
    convert(tmp_path / "uer", tmp_path / "back")
    same_tensors(tmp_path / "hf" / "model.safetensors", tmp_path / "back" / "model.safetensors")
    back, info = getattr(transformers, case.auto_class).from_pretrained(tmp_path / "back", output_loading_info=True)
    assert type(back).__name__ == case.architecture and not any(info.values()), info
    if not case.architecture.endswith("QuestionAnswering"):
        assert back.config.id2label == dict(enumerate(LABELS))
        assert back.config.num_labels == len(LABELS)


def test_pipeline_agrees_with_our_predictions(tmp_path):
    case = CASES[0]
    save_task_model(case, tmp_path / "hf", seed=3)
    convert(tmp_path / "hf", tmp_path / "uer")
    convert(tmp_path / "uer", tmp_path / "back")
    texts = ["w7 w42 w98 w5", "w11 w12", "w60 w61 w62 w63 w64 w65"]
    classify = transformers.pipeline("text-classification", model=str(tmp_path / "back"), top_k=None)
    model = load_uer(tmp_path / "uer").eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "back")
    for text, scored in zip(texts, classify(texts)):
        fields = dict(tokenizer([text], return_tensors="pt"))
        with torch.no_grad():
            probs = uer_logits(model, fields).softmax(-1)[0]
        theirs = {s["label"]: s["score"] for s in scored}
        for i, name in enumerate(LABELS):
            assert abs(theirs[name] - probs[i].item()) < 1e-5


def test_fine_tuned_classifier_exports_with_label_names(tmp_path):
    """A uer checkpoint with a task head and no Hugging Face record gets LABEL_i names; with the
    recipe's record, its own names."""
    from uer.config import compose_config, resolve
    from uer.models import build_model
    from uer.train.checkpoint import save_checkpoint

    cfg = resolve(compose_config(["+model=bert_tiny", "model/target=seq_cls", "model.vocab_size=99",
                                  "model.target.cls.num_labels=3", "model.num_layers=1"]))
    model = build_model(cfg.model)
    save_checkpoint(tmp_path / "plain", model, cfg, None, None)
    convert(tmp_path / "plain", tmp_path / "plain_hf")
    config = json.loads((tmp_path / "plain_hf" / "config.json").read_text())
    assert config["architectures"] == ["BertForSequenceClassification"]
    assert config["id2label"] == {"0": "LABEL_0", "1": "LABEL_1", "2": "LABEL_2"}
    cfg.convert = {"hf_config": {"id2label": {0: "a", 1: "b", 2: "c"}, "label2id": {"a": 0, "b": 1, "c": 2}}}
    save_checkpoint(tmp_path / "named", model, cfg, None, None)
    convert(tmp_path / "named", tmp_path / "named_hf")
    hf = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "named_hf").eval()
    assert hf.config.id2label == {0: "a", 1: "b", 2: "c"}
    ids = torch.tensor([[2, 7, 8, 9, 3]])
    with torch.no_grad():
        hidden, _ = model.eval().encode({"input_ids": ids})
        assert_parity(model.target.cls.logits(hidden, {}), hf(input_ids=ids).logits)
