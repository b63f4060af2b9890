"""Task behaviour plugged into the one Trainer: early stopping stops after ``patience`` evaluations
without improvement and the best checkpoint holds the best evaluation's weights; encoder freezing
keeps the encoder unchanged for N steps, then trains it; class weights, a target option, give the
weighted cross entropy computed by hand."""
from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

from uer.config import compose_config, resolve
from uer.errors import UerError
from uer.models import build_model
from uer.targets.seq_cls import SeqClsTarget
from uer.targets.token_cls import TokenClsTarget
from uer.train.assemble import Data, Settings, build_trainer
from uer.train.callbacks import BestCheckpoint, Callback, EarlyStopping, EncoderFreezer
from uer.train.config import OptimConfig, SchedulerConfig, TrainerConfig

VOCAB, LENGTH, ROWS = 40, 6, 32


class Rows:
    """Random token ids and binary labels, indexable the way BatchLoader reads a dataset."""

    def __init__(self):
        g = torch.Generator().manual_seed(0)
        self.ids = torch.randint(5, VOCAB, (ROWS, LENGTH), generator=g)
        self.labels = torch.randint(0, 2, (ROWS,), generator=g)

    def __len__(self) -> int:
        return ROWS

    def __getitem__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[indices], "labels": self.labels[indices]}


def collate(columns: dict[str, torch.Tensor], _rngs=None) -> dict[str, torch.Tensor]:
    return dict(columns)


def classifier(*overrides: str):
    """A 1-layer, 32-wide BERT with the sequence classification target: (model, its config)."""
    cfg = resolve(compose_config(["+model=bert_tiny", "model/target=seq_cls", f"model.vocab_size={VOCAB}",
                                  "model.num_layers=1", "model.dim=32", "model.num_heads=2", "model.ffn_dim=64",
                                  *overrides]))
    torch.manual_seed(0)
    return build_model(cfg.model), cfg


def trainer_for(model, cfg, out, steps: int, callbacks, evaluator=None, lr: float = 1e-2):
    t = TrainerConfig(max_steps=steps, output_dir=str(out), save_every=0, eval_every=1, log_every=1,
                      device="cpu", progress=False)
    run = Settings(t, OptimConfig(lr=lr), SchedulerConfig(name="constant", warmup_steps=0))
    rows = Rows()
    return build_trainer(model, run, cfg, None, Data(rows, torch.arange(ROWS).numpy(), collate, 8),
                         evaluator=evaluator, callbacks=callbacks)


# ------------------------------------------------------------------------------ early stop
def test_early_stopping_counts_evaluations_without_improvement():
    stop = EarlyStopping("acc", patience=2)
    for step, acc in enumerate([0.5, 0.7, 0.6, 0.7], start=1):  # best at 2; 0.7 again is no improvement
        stop.on_evaluate(SimpleNamespace(step=step), {"acc": acc})
        assert stop.should_stop == (step == 4)
    assert stop.best == (2, 0.7) and stop.stale == 2
    with pytest.raises(KeyError, match="'f1' is not an evaluation metric; have \\['acc'\\]"):
        EarlyStopping("f1", patience=1).on_evaluate(SimpleNamespace(step=1), {"acc": 0.5})
    with pytest.raises(ValueError, match="patience must be >= 1"):
        EarlyStopping("acc", patience=0)


def test_trainer_stops_early_and_keeps_the_best_weights(tmp_path, caplog):
    model, cfg = classifier()
    scores = iter([0.5, 0.8, 0.6, 0.7, 0.9, 0.9])  # best at step 2, then 2 evaluations without improvement
    kept = {}

    def evaluator(trainer):
        kept[trainer.step] = {k: v.clone() for k, v in trainer.model.state_dict().items()}
        return {"acc": next(scores)}

    callbacks = [BestCheckpoint("acc"), EarlyStopping("acc", patience=2)]
    trainer = trainer_for(model, cfg, tmp_path / "run", 6, callbacks, evaluator)
    with caplog.at_level(logging.INFO, logger="uer"):
        trainer.fit()
    assert trainer.step == 4  # stopped before 6
    assert "early stop at step 4: acc has not improved on 0.8000 (step 2) for 2 evaluations" in caplog.text
    assert [p.name for p in (tmp_path / "run" / "checkpoints").iterdir()] == ["step_0000004"]
    best = load_file(tmp_path / "run" / "best" / "model.safetensors")
    for name, value in best.items():
        assert torch.equal(value, kept[2][name]), name
    assert not torch.equal(best["target.cls.classifier.weight"], kept[4]["target.cls.classifier.weight"])


# -------------------------------------------------------------------------------- freezing
class Snapshots(Callback):
    """Copies of the encoder and head weights before each step."""

    def __init__(self):
        self.encoder, self.head = [], []

    def on_step_start(self, trainer) -> None:
        self.encoder.append(trainer.model.encoder.layers[0].ffn.up.weight.detach().clone())
        self.head.append(trainer.model.target.cls.classifier.weight.detach().clone())


def test_encoder_freezer_keeps_the_encoder_for_n_steps_then_trains_it(tmp_path):
    model, cfg = classifier()
    embedding = model.embedding.word.weight.detach().clone()
    snapshots = Snapshots()
    trainer = trainer_for(model, cfg, tmp_path / "run", 4, [EncoderFreezer(model, steps=2), snapshots])
    trainer.fit()
    encoder = [*snapshots.encoder, model.encoder.layers[0].ffn.up.weight.detach()]  # after 0 .. 4 steps
    head = [*snapshots.head, model.target.cls.classifier.weight.detach()]
    assert torch.equal(encoder[0], encoder[1]) and torch.equal(encoder[1], encoder[2])  # frozen for 2 steps
    assert not torch.equal(encoder[2], encoder[3]) and not torch.equal(encoder[3], encoder[4])  # then trained
    assert all(not torch.equal(head[i], head[i + 1]) for i in range(4))  # the head trains from the start
    assert not torch.equal(embedding, model.embedding.word.weight)  # the embedding was released too
    assert all(p.requires_grad for p in model.parameters())


# --------------------------------------------------------------------------- class weights
def weighted_ce(logits: torch.Tensor, labels: torch.Tensor, weights: list[float]) -> torch.Tensor:
    """Σ_i w[y_i] · -log softmax(logits_i)[y_i], written out."""
    logits = logits.detach().double()
    log_p = logits - logits.exp().sum(-1, keepdim=True).log()
    w = torch.tensor(weights, dtype=torch.float64)
    return -sum(w[y] * log_p[i, y] for i, y in enumerate(labels.tolist()))


def test_class_weights_of_the_sequence_target_weight_the_loss():
    torch.manual_seed(0)
    weights = [1.0, 3.0, 0.5]
    target = SeqClsTarget(dim=8, num_labels=3, pooler=False, dropout=0.0, class_weights=weights)
    plain = SeqClsTarget(dim=8, num_labels=3, pooler=False, dropout=0.0)
    plain.load_state_dict(target.state_dict())  # the weights are no state: same parameters
    assert "class_weights" not in target.state_dict()
    hidden = torch.randn(5, 4, 8)
    batch = {"labels": torch.tensor([0, 1, 2, 1, 1])}
    out = target(hidden, batch)
    expected = weighted_ce(target.logits(hidden, batch), batch["labels"], weights)
    loss = out.terms["cls"].loss_sum
    torch.testing.assert_close(loss.detach().double(), expected, rtol=1e-5, atol=1e-6 * float(expected.abs()))
    assert not torch.allclose(plain(hidden, batch).terms["cls"].loss_sum, loss)


def test_class_weights_of_the_token_target_skip_unscored_positions():
    torch.manual_seed(0)
    weights = [2.0, 0.25]
    target = TokenClsTarget(dim=8, num_labels=2, dropout=0.0, class_weights=weights)
    hidden = torch.randn(2, 3, 8)
    labels = torch.tensor([[0, 1, -100], [1, -100, 0]])
    out = target(hidden, {"labels": labels})
    scored = labels != -100
    expected = weighted_ce(target.logits(hidden)[scored], labels[scored], weights)
    loss = out.terms["token_cls"].loss_sum
    torch.testing.assert_close(loss.detach().double(), expected, rtol=1e-5, atol=1e-6 * float(expected.abs()))


def test_class_weights_come_from_the_target_config():
    model, _ = classifier("model.target.cls.num_labels=3", "model.target.cls.class_weights=[1.0,2.0,4.0]")
    assert torch.equal(model.target.cls.class_weights, torch.tensor([1.0, 2.0, 4.0]))
    assert classifier()[0].target.cls.class_weights is None  # default: unweighted
    with pytest.raises(UerError, match="class_weights has 2 values for 3 labels"):
        classifier("model.target.cls.num_labels=3", "model.target.cls.class_weights=[1.0,2.0]")
