"""What the fine-tuning recipes share: composing a recipe's config, building the task model from a
uer or Hugging Face checkpoint (or a preset, from random initialization), and running
the library's one :class:`~uer.train.trainer.Trainer`, assembled as pretraining's is, with a task
evaluator and callbacks (best checkpoint, early stopping, encoder freezing). Each task
(``classification/``, ``tagging/``, ``qa/``) adds only its data format, its features and its metrics."""
from __future__ import annotations

import importlib.resources
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from examples.features import Collator, Rows, predict
from uer.cli.common import run_command
from uer.config import compose_config, resolve
from uer.convert import load_pretrained
from uer.data.tokenizer import Tokenizer
from uer.errors import UerError
from uer.models.build import DEFAULT_ALLOWED, build_model
from uer.models.pretrained import load_weights
from uer.train.assemble import Data, build_trainer, settings
from uer.train.callbacks import BestCheckpoint, Callback, EarlyStopping, EncoderFreezer
from uer.train.config import validated
from uer.train.metrics import Evaluation
from uer.train.run import resume_point
from uer.train.trainer import Trainer

log = logging.getLogger("uer")
MODEL_ARGS = ("model", "model/")


@dataclass
class FinetuneConfig:
    """``finetune.*`` keys of every recipe.

    ``epochs`` passes over the training set (``max_steps`` > 0 overrides), evaluated on the dev set
    after each one (or every ``eval_every`` steps); the best by ``best_metric`` is kept in
    ``<output_dir>/best``; ``patience`` evaluations without improvement stop the run (0 = never).
    ``freeze_encoder_steps``: train only the task head for that many steps. ``layer_decay`` < 1: the
    learning rate of layer l of L is ``lr · layer_decay^(L + 1 - l)``. ``class_weights``: loss weight
    per label, in label order: the task target's ``class_weights`` option (the same as
    ``model.target.<head>.class_weights``). ``test_limit`` > 0: score only the first that many
    examples of ``task.test`` (0 = all).

    Best checkpoint, early stopping and freezing are :mod:`uer.train.callbacks` (see :func:`callbacks`).
    """

    epochs: int = 3
    max_steps: int = 0
    eval_every: int = 0
    best_metric: str = "acc"
    patience: int = 0
    freeze_encoder_steps: int = 0
    layer_decay: float = 1.0
    class_weights: list[float] | None = None
    test_limit: int = 0


def compose_recipe(config_dir: Path, argv: list[str]) -> tuple[DictConfig, list[str]]:
    """The recipe config ``<config_dir>/config.yaml`` (with uer's optim/scheduler/trainer groups)
    under the overrides in ``argv``, and the model overrides (``+model=<preset>``, ``model.*``,
    ``model/<part>=...``) set aside for :func:`build_task_model`.

    Raises:
        UerError: an unknown key or group option, a malformed override.
    """
    model_args = [a for a in argv if a.split("=", 1)[0].lstrip("+~").startswith(MODEL_ARGS)]
    rest = [a for a in argv if a not in model_args]
    try:
        with initialize_config_dir(str(Path(config_dir).resolve()), version_base=None):
            cfg = compose("config", overrides=rest)
    except (HydraException, OmegaConfBaseException) as e:
        text = " ".join(str(e).split("Config search path")[0].split())
        raise UerError(text or type(e).__name__) from None
    OmegaConf.set_struct(cfg, False)
    return cfg, model_args


def target_config(name: str) -> DictConfig:
    """The target part ``conf/model/target/<name>.yaml`` (interpolations left for the model config)."""
    return OmegaConf.load(str(importlib.resources.files("uer.conf") / "model" / "target" / f"{name}.yaml"))


def _set_labels(model_cfg: DictConfig, num_labels: int | None) -> None:
    for part in model_cfg.target.values():
        if isinstance(part, DictConfig) and "num_labels" in part and num_labels is not None:
            part.num_labels = num_labels


def build_task_model(cfg: DictConfig, model_args: list[str], target: str, num_labels: int | None,
                     tokenizer: Tokenizer | None = None):
    """The model for a task: the checkpoint ``trainer.init_from`` (uer or Hugging Face; its model
    config and tokenizer) with the target replaced by ``conf/model/target/<target>.yaml``, or the
    preset named by ``+model=`` with the tokenizer ``task.tokenizer``, from random initialization.
    A given ``tokenizer`` (the task data's, e.g. characters trained on speech transcripts) replaces
    the checkpoint's or ``task.tokenizer``.

    The embedding and encoder weights come from the checkpoint; so does the pooler of a BERT-style
    pretraining head (``target.sp.pooler``), as transformers does for ``BertForSequenceClassification``.
    The task head (with a preset, the whole model) starts from the initialization seeded by
    ``trainer.seed``.

    Returns:
        (model, resolved model config, tokenizer, the checkpoint's ``convert.hf_config`` record).

    Raises:
        UerError: neither a checkpoint nor a preset, no tokenizer, a ``_target_`` outside
            ``trainer.allowed_targets``, or a checkpoint whose encoder weights do not fit.
    """
    overrides = [a for a in model_args if not a.lstrip("+").startswith(("model=", "model/"))]
    allowed = DEFAULT_ALLOWED + tuple(cfg.trainer.get("allowed_targets") or ())
    where = f"trainer.init_from={cfg.trainer.get('init_from')}"
    record, pretrained = {}, None
    if cfg.trainer.get("init_from"):
        pretrained = load_pretrained(cfg.trainer.init_from, allowed)
        saved = pretrained.config
        record = OmegaConf.to_container(saved.convert.get("hf_config") or {}) if saved.get("convert") else {}
        model_cfg = OmegaConf.create({"model": saved.model})
        model_cfg.model.target = target_config(target)
        model_cfg.merge_with(OmegaConf.from_dotlist([a.lstrip("+") for a in overrides]))
        tokenizer = tokenizer or pretrained.tokenizer
        if tokenizer is None:
            raise UerError(f"{where}: the checkpoint has no tokenizer")
    else:
        if not any(a.startswith("+model=") for a in model_args):
            raise UerError("no model: pass trainer.init_from=<uer or Hugging Face checkpoint> or +model=<preset>")
        if tokenizer is None and not cfg.task.get("tokenizer"):
            raise UerError("task.tokenizer: a model from a preset needs a tokenizer (vocab.txt, tokenizer.json ...)")
        tokenizer = tokenizer or Tokenizer.load(cfg.task.tokenizer)
        model_cfg = compose_config([*model_args, f"model/target={target}",
                                    f"model.vocab_size={tokenizer.vocab_size}"])
    _set_labels(model_cfg.model, num_labels)
    model_cfg = resolve(model_cfg).model
    torch.manual_seed(cfg.trainer.seed)  # the task head (and a preset's whole model) start from trainer.seed
    model = build_model(model_cfg, allowed)
    if pretrained is not None:
        load_body(model, pretrained.model, where)
    return model, model_cfg, tokenizer, record


def load_body(model: torch.nn.Module, pretrained: torch.nn.Module, where: str) -> None:
    """Copy into the task ``model`` every weight of ``pretrained`` but its target's (embedding,
    encoder, decoder), and the pooler of a BERT-style pretraining head (``target.sp.pooler``) into a
    ``target.cls.pooler``, as transformers does for ``BertForSequenceClassification``.

    Raises:
        UerError: the body weights do not fit ``model`` (``where`` names the checkpoint).
    """
    weights = pretrained.state_dict()
    keep = {k: v for k, v in weights.items() if not k.startswith("target.")}
    keep.update({k.replace("target.sp.pooler", "target.cls.pooler"): v for k, v in weights.items()
                 if k.startswith("target.sp.pooler") and hasattr(model.target, "cls")
                 and getattr(model.target.cls, "pooler", None) is not None})
    result = model.load_state_dict(keep, strict=False)
    body = [k for k in result.missing_keys if not k.startswith("target.")]
    if body or result.unexpected_keys:
        raise UerError(f"{where}: weights do not fit; missing {body[:4]}, unexpected {result.unexpected_keys[:4]}")


def load_task_checkpoint(path: str | Path):
    """A fine-tuned checkpoint written by a recipe: ``(model in eval mode, its config, tokenizer)``.

    Raises:
        UerError: not a checkpoint (see :func:`uer.convert.load_pretrained`), not written by a
            fine-tuning recipe, or without a tokenizer.
    """
    model, cfg, tokenizer = load_pretrained(path)
    if cfg.get("task") is None:
        raise UerError(f"{path}: not a fine-tuned checkpoint (its config.yaml has no task section)")
    if tokenizer is None:
        raise UerError(f"{path}: the checkpoint has no tokenizer.json")
    return model, cfg, tokenizer


def run_config(cfg: DictConfig, model_cfg: DictConfig, task: dict, hf_config: dict) -> DictConfig:
    """What the checkpoints of a fine-tuning run record: the model, the task (its label names, so
    inference needs nothing else), the training settings, and ``convert.hf_config`` (``id2label``
    and ``label2id`` for ``uer-convert``)."""
    return OmegaConf.create({"model": model_cfg, "task": task, "finetune": cfg.finetune, "trainer": cfg.trainer,
                             "optim": cfg.optim, "scheduler": cfg.scheduler, "convert": {"hf_config": hf_config}})


@dataclass
class Job:
    """A fine-tuning run: the pieces a recipe prepares for :func:`train`."""

    cfg: DictConfig
    finetune: FinetuneConfig
    model: torch.nn.Module
    tokenizer: Tokenizer
    train_rows: Rows
    dev_rows: Rows
    evaluator: object
    run_config: DictConfig


TASK_SIZES = {"seq_length": 3, "batch_size": 1, "doc_stride": 1, "max_query_length": 1, "max_answer_length": 1}
"""Smallest value of each size in a recipe's ``task`` section (seq_length: ``[CLS] a [SEP] b [SEP]``
needs three special tokens)."""


def finetune_config(cfg: DictConfig) -> FinetuneConfig:
    """The validated ``finetune`` group of a recipe config, after the ``task`` sizes
    (:data:`TASK_SIZES`) and the trainer, optim and scheduler groups
    (:func:`uer.train.assemble.settings`) are checked: every value is in range before anything is
    read or built.

    Raises:
        UerError: an unknown key, a value of the wrong type, or one out of range (naming the key).
    """
    for key, low in TASK_SIZES.items():
        value = cfg.task.get(key)
        if key in cfg.task and (isinstance(value, bool) or not isinstance(value, int) or value < low):
            raise UerError(f"task.{key}={value}: must be an integer >= {low}")
    settings(cfg)
    ft = validated(cfg.finetune, FinetuneConfig, "finetune")
    if ft.epochs < 1:
        raise UerError(f"finetune.epochs={ft.epochs}: must be >= 1")
    for key in ("max_steps", "eval_every", "patience", "freeze_encoder_steps", "test_limit"):
        if getattr(ft, key) < 0:
            raise UerError(f"finetune.{key}={getattr(ft, key)}: must be >= 0 (0 = off)")
    if not 0 < ft.layer_decay <= 1:
        raise UerError(f"finetune.layer_decay={ft.layer_decay}: must be in (0, 1] (1 = off)")
    if ft.class_weights is not None and not all(math.isfinite(w) and w >= 0 for w in ft.class_weights):
        raise UerError(f"finetune.class_weights={ft.class_weights}: must be finite numbers >= 0")
    return ft


def callbacks(ft: FinetuneConfig, model: torch.nn.Module) -> list[Callback]:
    """The callbacks ``finetune.*`` asks for: the best checkpoint by ``best_metric`` (always), early
    stopping after ``patience`` evaluations without improvement, the encoder of ``model`` frozen for
    the first ``freeze_encoder_steps`` steps."""
    chosen: list[Callback] = [BestCheckpoint(ft.best_metric)]
    if ft.patience:
        chosen.append(EarlyStopping(ft.best_metric, ft.patience))
    if ft.freeze_encoder_steps:
        chosen.append(EncoderFreezer(model, ft.freeze_encoder_steps))
    return chosen


def train(job: Job) -> Trainer:
    """Fine-tune ``job.model`` with the library's Trainer, assembled as pretraining's is
    (:func:`uer.train.assemble.build_trainer`): ``finetune.epochs`` epochs, dev evaluation by
    ``job.evaluator`` after each, the :func:`callbacks` (best checkpoint in ``<output_dir>/best``).
    Returns the trainer after ``fit``.

    Raises:
        UerError: bad trainer/optim/scheduler keys, too little data for one batch, or an output dir
            that holds another run.
    """
    cfg, ft = job.cfg, job.finetune
    batch_size = cfg.task.batch_size
    if len(job.train_rows) < batch_size:
        raise UerError(f"task.train={cfg.task.train}: {len(job.train_rows)} examples, fewer than one batch of "
                       f"{batch_size}; lower task.batch_size")
    per_epoch = len(job.train_rows) // batch_size
    cfg.trainer.max_steps = ft.max_steps or ft.epochs * per_epoch
    cfg.trainer.eval_every = ft.eval_every or per_epoch
    run = settings(cfg)
    job.run_config.trainer = OmegaConf.structured(run.trainer)
    resume_from = resume_point(run.trainer, job.run_config.model)
    rows = Data(job.train_rows, np.arange(len(job.train_rows)), Collator(job.tokenizer.pad_token_id or 0), batch_size)
    trainer = build_trainer(job.model, run, job.run_config, job.tokenizer, rows, evaluator=job.evaluator,
                            callbacks=callbacks(ft, job.model), layer_decay=ft.layer_decay, resume_from=resume_from)
    log.info("fine-tuning: %d training / %d dev examples, %d steps (%d per epoch), output %s",
             len(job.train_rows), len(job.dev_rows), run.trainer.max_steps, per_epoch, run.trainer.output_dir)
    trainer.fit()
    return trainer


def score_rows(model, rows: Rows, pad_id: int, batch_size: int, head, score, precision: str,
               desc: str = "predict", progress: bool = True) -> dict[str, float]:
    """One pass over the labeled ``rows``: the loss and target metrics (``loss``, ``<target>/...``)
    and ``score(predictions of head on rows) -> {metric: value}``."""
    evaluation = Evaluation()
    out = predict(model, rows, Collator(pad_id), batch_size, head, desc=desc, progress=progress,
                  precision=precision, evaluation=evaluation)
    return {**evaluation.result(), **score(out)}


def kept_best(trainer) -> tuple[int, float] | None:
    """``(step, value)`` of the evaluation whose weights :class:`BestCheckpoint` kept in
    ``<output_dir>/best`` during this run, or None without one."""
    return next((c.best for c in trainer.callbacks if isinstance(c, BestCheckpoint)), None)


class DevEvaluator:
    """A Trainer evaluator: :func:`score_rows` on the dev ``rows``. It remembers each evaluation's
    scores by step, so the recipe reports the best checkpoint's dev scores (:meth:`best`) without
    scoring the dev set once more."""

    def __init__(self, rows: Rows, pad_id: int, batch_size: int, head, score):
        self.rows, self.pad_id, self.batch_size, self.head, self.score = rows, pad_id, batch_size, head, score
        self.scores: dict[int, dict[str, float]] = {}

    def __call__(self, trainer) -> dict[str, float]:
        result = score_rows(trainer.model, self.rows, self.pad_id, self.batch_size, self.head, self.score,
                            trainer.cfg.precision, progress=False)
        self.scores[trainer.step] = result
        return result

    def best(self, trainer) -> dict[str, float]:
        """The dev scores of the weights in ``<output_dir>/best``: those of the evaluation that
        :class:`BestCheckpoint` kept, scored again only when this process did not see it (a resumed
        run whose best came before the resume) or when there was no evaluation."""
        kept = kept_best(trainer)
        if kept is not None and kept[0] in self.scores:
            return self.scores[kept[0]]
        return self(trainer)


def best_model(trainer):
    """The weights of the best evaluation (``<output_dir>/best``), or the final ones without one."""
    best = Path(trainer.output_dir) / "best" / "model.safetensors"
    if best.is_file():
        load_weights(trainer.model, best)
    return trainer.model.eval()


def run_recipe(task, config_dir: Path, argv: list[str]) -> dict[str, float]:
    """The recipe of a task module: fine-tune on ``task.train`` with dev evaluation every epoch, keep
    the best, report its dev scores, score it on the labeled ``task.test`` (its first
    ``finetune.test_limit`` examples, if > 0), and write predictions for
    ``task.test_nolabel`` to ``<output_dir>/test_predictions.*``. Returns ``dev/*`` and ``test/*``:
    the loss and the task's metrics.

    A task module has ``TARGET`` (the target config) and ``HEAD`` (its name in the model), and:
    ``labels(cfg) -> (labels, names) | (None, None)``; ``load(path, tokenizer, task_cfg, model_cfg,
    labels, limit=0) -> (Rows, context)`` (the first ``limit`` examples when > 0); ``score(predictions, context) -> metrics``; ``head(model, hidden,
    batch)``; ``infer(model, run_cfg, tokenizer, source, output, batch_size)``.

    Raises:
        UerError: bad configuration or input (see :func:`train` and the task's ``load``).
    """
    cfg, model_args = compose_recipe(config_dir, argv)
    ft = finetune_config(cfg)
    if ft.class_weights is not None:  # an option of the task's target
        model_args = [*model_args, f"model.target.{task.HEAD}.class_weights=[{','.join(map(str, ft.class_weights))}]"]
    labels, names = task.labels(cfg)
    model, model_cfg, tokenizer, record = build_task_model(cfg, model_args, task.TARGET,
                                                           None if labels is None else len(labels))
    data = {s: task.load(cfg.task[s], tokenizer, cfg.task, model_cfg, labels) for s in ("train", "dev")}
    pad_id = tokenizer.pad_token_id or 0
    batch_size = cfg.task.batch_size
    dev_rows, dev_context = data["dev"]
    evaluator = DevEvaluator(dev_rows, pad_id, batch_size, task.head, lambda out: task.score(out, dev_context))
    hf = dict(record)
    if names is not None:
        hf.update(id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)})
    meta = {**OmegaConf.to_container(cfg.task), "labels": labels, "names": names}
    trainer = train(Job(cfg, ft, model, tokenizer, data["train"][0], dev_rows, evaluator,
                        run_config(cfg, model_cfg, meta, hf)))
    model = best_model(trainer)
    report = {"dev": evaluator.best(trainer)}
    if cfg.task.get("test"):
        rows, context = task.load(cfg.task.test, tokenizer, cfg.task, model_cfg, labels, limit=ft.test_limit)
        report["test"] = score_rows(model, rows, pad_id, batch_size, task.head, lambda out: task.score(out, context),
                                    cfg.trainer.precision, desc="test", progress=cfg.trainer.progress)
    result = {f"{split}/{k}": v for split, scores in report.items() for k, v in scores.items() if "/" not in k}
    if cfg.task.get("test_nolabel"):
        suffix = Path(cfg.task.test_nolabel).suffix
        task.infer(model, trainer.run_config, tokenizer, cfg.task.test_nolabel,
                   Path(trainer.output_dir) / f"test_predictions{suffix}", batch_size, progress=cfg.trainer.progress)
    log.info("best dev and test scores: %s", " ".join(f"{k}={v:.4f}" for k, v in result.items()))
    return result


def script_main(run, doc: str, config_dir: Path, argv: list[str]) -> int:
    """The body of a recipe script with its own ``run(argv)``: ``-h``/``--help`` prints ``doc`` and
    the recipe's ``config.yaml`` (every key with its default and comment); otherwise ``run(argv)``,
    exit status 0, or 2 with one ``error:`` line on bad input."""
    if {"-h", "--help"} & set(argv):
        print(doc + "\nkeys and defaults:\n" + (Path(config_dir) / "config.yaml").read_text(encoding="utf-8"))
        return 0
    return run_command(lambda args: (run(args), 0)[1], argv)


def main(task, script: str, argv: list[str]) -> int:
    """The body of ``examples/<task>/train.py``: ``-h``/``--help`` prints the script's usage and its
    config (every key with its default and comment); otherwise :func:`run_recipe`, exit status 0,
    or 2 with one ``error:`` line on bad input."""
    here = Path(script).resolve().parent
    if {"-h", "--help"} & set(argv):
        print(f"usage: python examples/{here.name}/train.py [trainer.init_from=<uer checkpoint or Hugging Face dir> "
              f"| +model=<preset> task.tokenizer=<vocab>] [key=value ...]\n\n"
              f"keys and defaults ({here / 'config.yaml'}):\n{(here / 'config.yaml').read_text(encoding='utf-8')}")
        return 0

    def job(args: list[str]) -> int:
        run_recipe(task, here, args)
        return 0

    return run_command(job, argv)
