"""The fine-tuning recipes (examples/) train a tiny model for a few steps on slices of the shared
sets, keep the best checkpoint, write predictions that the inference entry reproduces; bad input
gets a one-line error or a counted skip; options (class weights, freezing, layer decay, early
stopping) act; model soups average."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for `examples.*`

from examples import infer
from examples.classification import task as classification
from examples.finetune import build_task_model, compose_recipe, run_recipe
from examples.qa import task as qa
from examples.tagging import task as tagging
from uer.errors import UerError

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
TINY = ["+model=bert_tiny", "model.num_layers=1", "model.dim=32", "model.num_heads=2", "model.ffn_dim=64"]


def head(path: Path, lines: int, out: Path) -> Path:
    out.write_text("\n".join(path.read_text(encoding="utf-8").splitlines()[:lines]) + "\n", encoding="utf-8")
    return out


def common(shared, tmp_path, name):
    return [*TINY, f"task.tokenizer={shared / 'vocab' / 'google_zh_vocab.txt'}",
            f"trainer.output_dir={tmp_path / name}",
            "trainer.progress=false", "optim.lr=1e-3"]


def test_classification_recipe_with_options_and_inference(shared_data, tmp_path, capfd):
    d = shared_data / "datasets" / "book_review"
    args = common(shared_data, tmp_path, "run") + [
        f"task.train={head(d / 'train.tsv', 65, tmp_path / 'train.tsv')}",
        f"task.dev={head(d / 'dev.tsv', 33, tmp_path / 'dev.tsv')}", f"task.test={tmp_path / 'dev.tsv'}",
        f"task.test_nolabel={head(d / 'test_nolabel.tsv', 17, tmp_path / 'nolabel.tsv')}",
        "task.seq_length=32", "task.batch_size=16", "finetune.epochs=2", "finetune.class_weights=[1.0,2.0]",
        "finetune.freeze_encoder_steps=2", "finetune.layer_decay=0.8", "finetune.best_metric=macro_f1"]
    result = run_recipe(classification, EXAMPLES / "classification", args)
    assert "it/s" not in capfd.readouterr().err  # trainer.progress=false: no progress bar, test and predict too
    assert set(result) == {f"{s}/{m}" for s in ("dev", "test") for m in ("loss", "acc", "macro_f1")}
    assert result["dev/acc"] == result["test/acc"]  # the same file, the best weights
    assert result["dev/loss"] == pytest.approx(result["test/loss"])
    run = tmp_path / "run"
    evals = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if '"eval"' in x]
    assert [e["step"] for e in evals] == [4, 8]  # once per epoch of 64 / 16 batches
    for e in evals:  # loss, target metrics and task metrics come from the same pass over dev
        assert e["cls/acc"] == pytest.approx(e["acc"]) and e["loss"] == e["cls/loss"] > 0
    assert result["dev/macro_f1"] == pytest.approx(max(e["macro_f1"] for e in evals))
    predicted = (run / "test_predictions.tsv").read_text().splitlines()
    assert predicted[0] == "label\tprob" and len(predicted) == 17
    infer.main([str(run / "best"), str(tmp_path / "nolabel.tsv"), str(tmp_path / "again.tsv"), "--batch-size", "5"])
    assert (tmp_path / "again.tsv").read_text().splitlines() == predicted
    from uer.train.checkpoint import load_config

    assert dict(load_config(run / "best").convert.hf_config.id2label) == {0: "0", 1: "1"}
    assert list(load_config(run / "best").model.target.cls.class_weights) == [1.0, 2.0]  # a target option


def test_early_stopping_stops_after_patience_evaluations(shared_data, tmp_path):
    d = shared_data / "datasets" / "book_review"
    args = common(shared_data, tmp_path, "run") + [
        f"task.train={head(d / 'train.tsv', 33, tmp_path / 'train.tsv')}",
        f"task.dev={head(d / 'dev.tsv', 9, tmp_path / 'dev.tsv')}", "task.test=null", "task.test_nolabel=null",
        "task.seq_length=16", "task.batch_size=16", "finetune.epochs=6", "finetune.patience=1",
        "optim.lr=1e-30"]  # updates far below float32 resolution: the model (and dev metric) stays as it was
    run_recipe(classification, EXAMPLES / "classification", args)
    steps = sorted((tmp_path / "run" / "checkpoints").iterdir())
    assert steps[-1].name == "step_0000004"  # best at 2, no gain at 4: stopped before 12


def test_encoder_freezing_and_layer_wise_learning_rates():
    from types import SimpleNamespace

    from uer.config import compose_config, resolve
    from uer.models import build_model
    from uer.train.config import OptimConfig
    from uer.train.callbacks import EncoderFreezer
    from uer.train.optim import build_optimizer

    cfg = resolve(compose_config(["+model=bert_tiny", "model/target=seq_cls", "model.vocab_size=50"]))
    model = build_model(cfg.model)
    optimizer = build_optimizer(model, OptimConfig(lr=1e-2), layer_decay=0.5)
    lr = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    assert lr[id(model.target.cls.classifier.weight)] == 1e-2
    assert lr[id(model.encoder.layers[1].ffn.up.weight)] == 1e-2 * 0.5
    assert lr[id(model.encoder.layers[0].ffn.up.weight)] == 1e-2 * 0.25
    assert lr[id(model.embedding.word.weight)] == 1e-2 * 0.125
    freeze = EncoderFreezer(model, steps=1)
    batch = {"input_ids": torch.tensor([[2, 5, 6, 3]]), "labels": torch.tensor([1])}
    for step in (0, 1):
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        freeze.on_step_start(SimpleNamespace(step=step))
        model(batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        moved = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
        assert ("encoder.layers.0.ffn.up.weight" in moved) == (step == 1)
        assert "target.cls.classifier.weight" in moved


def test_tagging_recipe(shared_data, tmp_path):
    d = shared_data / "datasets" / "test_data" / "msra_ner"
    args = common(shared_data, tmp_path, "run") + [
        f"task.train={head(d / 'train.tsv', 49, tmp_path / 'train.tsv')}",
        f"task.dev={head(d / 'dev.tsv', 17, tmp_path / 'dev.tsv')}", f"task.labels={d / 'label2id.json'}",
        f"task.test={tmp_path / 'dev.tsv'}", f"task.test_nolabel={head(d / 'test_nolabel.tsv', 9, tmp_path / 'n.tsv')}",
        "task.seq_length=48", "task.batch_size=16", "finetune.epochs=1"]
    result = run_recipe(tagging, EXAMPLES / "tagging", args)
    assert set(result) == {f"{s}/{m}" for s in ("dev", "test") for m in ("loss", "precision", "recall", "f1")}
    lines = (tmp_path / "run" / "test_predictions.tsv").read_text().splitlines()[1:]
    words = [x.split() for x in (tmp_path / "n.tsv").read_text().splitlines()[1:]]
    assert [len(x.split()) for x in lines] == [len(w) for w in words]  # words cut by seq_length are tagged O


def test_qa_recipe_answers_from_the_context(shared_data, tmp_path):
    d = shared_data / "datasets" / "test_data" / "cmrc"
    args = common(shared_data, tmp_path, "run") + [
        "task.seq_length=64", "task.doc_stride=32", "task.max_query_length=16", "task.batch_size=16",
        "finetune.max_steps=3", "finetune.eval_every=3"]
    result = run_recipe(qa, EXAMPLES / "qa", args)
    assert set(result) == {"dev/loss", "dev/em", "dev/f1"}
    answers = json.loads((tmp_path / "run" / "test_predictions.json").read_text())
    test = json.loads((d / "test.json").read_text())["data"]
    contexts = {q["id"]: p["context"] for a in test for p in a["paragraphs"] for q in p["qas"]}
    assert answers.keys() == contexts.keys()
    assert all(text in contexts[i] for i, text in answers.items())


# --------------------------------------------------------------------------------- metrics
def test_macro_f1_on_a_hand_made_case():
    import numpy as np

    s = classification.scores(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 1]))
    assert s["acc"] == 0.5
    # class 0: P 1/2 R 1 F 2/3; class 1: P 1 R 1/3 F 1/2; class 2: F 0
    assert s["macro_f1"] == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)


def test_entity_f1_with_partial_overlaps():
    assert tagging.entities(["B-PER", "I-PER", "O", "I-LOC", "I-LOC", "B-LOC", "I-ORG"]) == {
        ("PER", 0, 1), ("LOC", 3, 4), ("LOC", 5, 5), ("ORG", 6, 6)}
    gold = [["B-PER", "I-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "I-ORG", "O"]]
    predicted = [["B-PER", "I-PER", "O", "O", "B-LOC"],  # PER cut short: wrong; LOC right
                 ["B-ORG", "I-ORG", "I-ORG"]]            # ORG one too long: wrong
    s = tagging.scores(predicted, gold)
    assert s == {"precision": 1 / 3, "recall": 1 / 3, "f1": pytest.approx(1 / 3)}
    assert tagging.scores([["B-LOC", "I-PER"]], [["B-LOC", "I-LOC"]]) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}


def test_qa_metrics_and_an_answer_found_in_a_later_window(shared_data):
    import numpy as np
    from omegaconf import OmegaConf

    from uer.data.tokenizer import Tokenizer

    assert qa.scores(["北京大学。"], [["北京大学", "北大"]]) == {"em": 100.0, "f1": 100.0}
    assert qa.scores(["北京"], [["北京大学"]])["f1"] == pytest.approx(100 * 2 * 1 * 0.5 / 1.5)
    assert qa.scores(["the big cat"], [["a big dog"]])["f1"] == pytest.approx(100 / 3)  # 1 of 3 tokens each way
    tokenizer = Tokenizer.load(shared_data / "vocab" / "google_zh_vocab.txt")
    context = "甲乙丙丁戊己庚辛壬癸子丑寅卯辰巳午未申酉"
    example = {"id": "q", "question": "问", "context": context, "answers": [("寅卯", 12)]}
    cfg = OmegaConf.create({"seq_length": 12, "doc_stride": 4, "max_query_length": 4})
    rows, meta = qa.windows([example], tokenizer, cfg, 2, with_answers=True)
    assert len(meta) == 4 and all(w.first == 3 for w in meta)  # room 8, windows at 0, 4, 8, 12
    starts = rows.columns["start_positions"]
    assert [s > 0 for s in starts] == [False, False, True, True]  # the answer (tokens 12-13) in windows 3, 4
    logits = [np.zeros((12, 2), dtype=np.float32) for _ in meta]
    logits[2][3 + 4, 0] = logits[2][3 + 5, 1] = 5.0    # window 3 points at tokens 12-13
    logits[0][3 + 1, 0] = logits[0][3 + 2, 1] = 4.0    # window 1 is less sure of tokens 1-2
    assert qa.best_answers(logits, meta, [example]) == ["寅卯"]


# ------------------------------------------------------------------------------- bad input
def test_bad_classification_input_is_a_one_line_error(shared_data, tmp_path):
    args = common(shared_data, tmp_path, "run") + ["task.seq_length=16", "task.batch_size=2"]
    missing = tmp_path / "missing.tsv"
    missing.write_text("label\ttext_a\n1\tgood\n0\n", encoding="utf-8")
    with pytest.raises(UerError, match=r"missing.tsv:3: 1 fields, the header has 2"):
        run_recipe(classification, EXAMPLES / "classification", args + [f"task.train={missing}"])
    no_column = tmp_path / "no_column.tsv"
    no_column.write_text("text_a\ngood\n", encoding="utf-8")
    with pytest.raises(UerError, match=r"no_column.tsv: header \['text_a'\] has no column 'label'"):
        run_recipe(classification, EXAMPLES / "classification", args + [f"task.train={no_column}"])
    train, dev = tmp_path / "train.tsv", tmp_path / "dev.tsv"
    train.write_text("label\ttext_a\n1\tgood\n0\tbad\n", encoding="utf-8")
    dev.write_text("label\ttext_a\n1\tgood\n7\tstrange\n", encoding="utf-8")
    with pytest.raises(UerError, match=r"dev.tsv:3: label '7' is not in the label set \['0', '1'\]"):
        run_recipe(classification, EXAMPLES / "classification", args + [f"task.train={train}", f"task.dev={dev}"])
    assert not (tmp_path / "run").exists()


def test_qa_answer_not_in_its_context_is_a_counted_skip(tmp_path, caplog):
    data = {"data": [{"paragraphs": [{"context": "北京是中国的首都。", "qas": [
        {"id": "ok", "question": "首都？", "answers": [{"text": "北京", "answer_start": 0}]},
        {"id": "moved", "question": "哪里？", "answers": [{"text": "中国", "answer_start": 0}]},
        {"id": "absent", "question": "谁？", "answers": [{"text": "上海", "answer_start": 2}]}]}]}]}
    path = tmp_path / "train.json"
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    with caplog.at_level("WARNING", logger="uer"):
        examples = qa.read_squad(path)
    assert [e["id"] for e in examples] == ["ok"]
    assert "skipped 2 of 3 questions" in caplog.text and "first: moved" in caplog.text
    assert [e["id"] for e in qa.read_squad(path, with_answers=False)] == ["ok", "moved", "absent"]


def test_tagging_tag_outside_the_set_and_count_mismatch(shared_data, tmp_path):
    from uer.data.tokenizer import Tokenizer

    tokenizer = Tokenizer.load(shared_data / "vocab" / "google_zh_vocab.txt")
    with pytest.raises(UerError, match=r"x.tsv:2: tag 'B-XYZ' is not in the tag set"):
        tagging.features([{"text_a": "北 京", "label": "B-XYZ O"}], tokenizer, 16, ["O", "B-LOC"], "x.tsv")
    with pytest.raises(UerError, match=r"x.tsv:2: 2 words but 1 tags"):
        tagging.features([{"text_a": "北 京", "label": "O"}], tokenizer, 16, ["O", "B-LOC"], "x.tsv")


# ------------------------------------------------------------------------------------ soup
def test_soup_averages_and_refuses_other_configs(tmp_path):
    from uer.cli.soup import soup
    from uer.config import compose_config, resolve
    from uer.models import build_model
    from uer.train.checkpoint import save_checkpoint

    cfg = resolve(compose_config(["+model=bert_tiny", "model.vocab_size=50", "model.num_layers=1"]))
    models = [build_model(cfg.model) for _ in range(3)]
    for i, m in enumerate(models):
        save_checkpoint(tmp_path / f"m{i}", m, cfg, None, None)
    soup([tmp_path / f"m{i}" for i in range(3)], tmp_path / "soup")
    mixed = load_file(str(tmp_path / "soup" / "model.safetensors"))
    states = [m.state_dict() for m in models]
    name = "encoder.layers.0.attention.qkv.weight"
    torch.testing.assert_close(mixed[name], sum(s[name] for s in states) / 3)
    other = resolve(compose_config(["+model=bert_tiny", "model.vocab_size=50", "model.num_layers=2"]))
    save_checkpoint(tmp_path / "deeper", build_model(other.model), other, None, None)
    with pytest.raises(UerError, match=r"deeper has another model config .*num_layers: 1 vs 2"):
        soup([tmp_path / "m0", tmp_path / "deeper"], tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


def test_trainer_seed_sets_the_initialization(shared_data, tmp_path):
    def weights(seed):
        cfg, model_args = compose_recipe(EXAMPLES / "classification",
                                         [*common(shared_data, tmp_path, "run"), f"trainer.seed={seed}"])
        model = build_task_model(cfg, model_args, classification.TARGET, 2)[0]
        return {k: v.clone() for k, v in model.state_dict().items()}

    first, again, other = weights(1), weights(1), weights(2)
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not torch.equal(first["target.cls.classifier.weight"], other["target.cls.classifier.weight"])
    assert not torch.equal(first["embedding.word.weight"], other["embedding.word.weight"])
