"""Fine-tune an image classifier from a pretrained encoder (ViT, BEiT, any patch-embedding model, or the
image tower of a two-tower model such as CLIP) or from random initialization, with few labels per
class, and score it on held-out images.

    python examples/image_classification/train.py trainer.init_from=<uer checkpoint or HF dir> [key=value ...]
    python examples/image_classification/train.py +model=beit_tiny        # the same model, random init

The images are those of ``uer-preprocess``'s ``image`` processor (a ``label<TAB>image_path`` TSV, a
folder per label, or scikit-learn's digits). The test set is the rows pretraining holds out with the
same seed and count (``data.eval_samples``, :func:`uer.data.loader.split_indices`), so a model
pretrained on the rest never saw them; ``task.labels_per_class`` of the remaining images per class
are the labelled training set and as many again the dev set (best checkpoint). The head is the
``cls`` target on the [CLS] position; the body's weights come from the checkpoint (:func:`load_body`;
of a two-tower checkpoint, its image stream: :func:`image_body`).
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root, for `examples.*`

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from uer.preprocess.images import ImageProcessor

from examples.features import Rows
from examples.finetune import (
    best_model,
    callbacks,
    compose_recipe,
    finetune_config,
    kept_best,
    load_body,
    script_main,
    target_config,
)
from uer.config import compose_config, resolve
from uer.convert import load_pretrained
from uer.data.images import ImageCollator
from uer.data.loader import BatchLoader, split_indices
from uer.errors import UerError
from uer.models.build import DEFAULT_ALLOWED, build_model
from uer.train.assemble import Data, build_trainer, settings
from uer.train.metrics import Evaluation
from uer.train.run import resume_point

HERE = Path(__file__).resolve().parent


def load_images(task: DictConfig) -> tuple[Rows, list[str]]:
    """Every image of ``task.corpus`` as PNG bytes with its label id, and the label names."""
    processor = ImageProcessor(corpus=task.corpus, num_proc=1)
    plan = processor.plan()
    rows = [row for shard in plan.shards for row in processor.generate(shard, None)]
    return Rows({"image": [r["image"] for r in rows], "label": [r["label"] for r in rows]}), plan.label_names


def few_label_split(labels: np.ndarray, task: DictConfig) -> dict[str, np.ndarray]:
    """Row ids of the ``train`` / ``dev`` sets (``labels_per_class`` per class each, drawn by a
    generator seeded with ``task.seed``) and of the ``test`` set (pretraining's held-out rows).

    Raises:
        UerError: a class has fewer than 2 · ``labels_per_class`` images outside the test set.
    """
    rest, test = split_indices(len(labels), task.test_samples, task.seed)
    order = rest[np.random.default_rng([task.seed, 0xF1E]).permutation(len(rest))]
    k = task.labels_per_class
    train, dev = [], []
    for c in np.unique(labels):
        mine = order[labels[order] == c]
        if len(mine) < 2 * k:
            raise UerError(f"task.labels_per_class={k}: class {c} has only {len(mine)} images outside the test set")
        train += mine[:k].tolist()
        dev += mine[k:2 * k].tolist()
    return {"train": np.sort(train), "dev": np.sort(dev), "test": np.sort(test)}


def build(cfg: DictConfig, model_args: list[str], num_labels: int):
    """(model, resolved model config): the checkpoint ``trainer.init_from`` with a ``cls`` head on
    its image body (:func:`image_body`), or the preset of ``+model=`` (its image body: CLIP's vision
    tower) from random initialization (seeded by ``trainer.seed``)."""
    allowed = DEFAULT_ALLOWED + tuple(cfg.trainer.get("allowed_targets") or ())
    overrides = [a.lstrip("+") for a in model_args if not a.lstrip("+").startswith(("model=", "model/"))]
    body = None
    if cfg.trainer.get("init_from"):
        pretrained = load_pretrained(cfg.trainer.init_from, allowed)
        body, body_cfg = image_body(pretrained.config.model, pretrained.model)
        model_cfg = OmegaConf.create({"model": body_cfg})
        model_cfg.model.target = target_config("cls")
        model_cfg.merge_with(OmegaConf.from_dotlist(overrides))
    elif any(a.startswith("+model=") for a in model_args):
        model_cfg = compose_config([*model_args, "model/target=cls"])
        model_cfg.model = image_body(model_cfg.model)[1]
    else:
        raise UerError("no model: pass trainer.init_from=<uer or Hugging Face checkpoint> or +model=<preset>")
    model_cfg.model.num_labels = num_labels
    model_cfg = resolve(model_cfg).model
    torch.manual_seed(cfg.trainer.seed)
    model = build_model(model_cfg, allowed)
    if body is not None:
        load_body(model, body, f"trainer.init_from={cfg.trainer.init_from}")
    return model, model_cfg


def image_body(model_cfg: DictConfig, model: nn.Module | None = None) -> tuple[nn.Module | None, DictConfig]:
    """The image encoder of a model config (and of its ``model``, when given): the model itself for
    a single-stream model (ViT, BEiT), else the image stream of a two-tower model (CLIP's vision
    tower: the stream whose embedding has a ``patch`` part) as a single-stream model, i.e. that
    stream's embedding and encoder (weights under ``embedding.``/``encoder.``) with ``dim``,
    ``image_size``, ``patch_size`` and ``channels`` taken from its patch embedding.

    Returns:
        (the body module, or None without ``model``; its model config, the target left as it was).

    Raises:
        UerError: a two-tower model without an image stream.
    """
    if "first" not in model_cfg.encoder:
        return model, model_cfg
    streams = [s for s in ("first", "second") if "patch" in (model_cfg.embedding.get(s) or {}).get("parts", {})]
    if not streams:
        raise UerError("a two-tower model without an image stream (no patch embedding) has no image body")
    stream = streams[0]
    patch = model_cfg.embedding[stream].parts.patch
    body_cfg = OmegaConf.create({k: v for k, v in model_cfg.items() if k not in ("embedding", "encoder")})
    OmegaConf.set_struct(body_cfg, False)  # a composed preset's config is struct; the recipe adds num_labels
    body_cfg.merge_with({"embedding": model_cfg.embedding[stream], "encoder": model_cfg.encoder[stream],
                         "dim": patch.dim, "image_size": patch.image_size, "patch_size": patch.patch_size,
                         "channels": patch.channels})
    if model is None:
        return None, body_cfg
    return nn.ModuleDict({"embedding": getattr(model.embedding, stream),
                          "encoder": getattr(model.encoder, stream)}), body_cfg


@torch.no_grad()
def accuracy(model, rows: Rows, ids: np.ndarray, collate, batch_size: int) -> float:
    """Top-1 accuracy of ``model``'s ``cls`` head on the rows ``ids``."""
    model.eval()
    device = next(model.parameters()).device
    evaluation = Evaluation()
    loader = BatchLoader(rows, ids, collate, batch_size, shuffle=False, drop_last=False)
    for batch in loader.epoch_batches(0):
        evaluation.add(model({k: v.to(device) for k, v in batch.items()}))
    return evaluation.result()["cls/acc"]


def run(argv: list[str]) -> dict[str, float]:
    """Fine-tune, keep the best dev checkpoint, return ``dev/acc`` and ``test/acc``.

    Raises:
        UerError: bad configuration or input.
    """
    cfg, model_args = compose_recipe(HERE, argv)
    ft = finetune_config(cfg)
    if ft.class_weights is not None:
        raise UerError("finetune.class_weights: the image classification head has no class weights")
    rows, names = load_images(cfg.task)
    split = few_label_split(np.asarray(rows.columns["label"]), cfg.task)
    model, model_cfg = build(cfg, model_args, len(names))
    collate = ImageCollator(model_cfg.image_size, model_cfg.channels)
    batch_size = cfg.task.batch_size
    per_epoch = max(1, len(split["train"]) // batch_size)
    cfg.trainer.max_steps = ft.max_steps or ft.epochs * per_epoch
    cfg.trainer.eval_every = ft.eval_every or per_epoch
    run_settings = settings(cfg)
    run_cfg = OmegaConf.create({"model": model_cfg, "task": {**OmegaConf.to_container(cfg.task), "names": names},
                                "finetune": cfg.finetune, "trainer": OmegaConf.structured(run_settings.trainer),
                                "optim": cfg.optim, "scheduler": cfg.scheduler,
                                "convert": {"hf_config": {"id2label": dict(enumerate(names))}}})
    trainer = build_trainer(model, run_settings, run_cfg, None, Data(rows, split["train"], collate, batch_size),
                            Data(rows, split["dev"], collate, batch_size), callbacks=callbacks(ft, model),
                            layer_decay=ft.layer_decay, resume_from=resume_point(run_settings.trainer, model_cfg))
    trainer.fit()
    model = best_model(trainer)
    kept = kept_best(trainer)  # the dev accuracy that chose the best weights: not scored a second time
    dev = kept[1] if kept is not None and ft.best_metric == "cls/acc" else \
        accuracy(model, rows, split["dev"], collate, batch_size)
    result = {"dev/acc": dev, "test/acc": accuracy(model, rows, split["test"], collate, batch_size)}
    print(" ".join(f"{k}={v:.4f}" for k, v in result.items()), flush=True)
    return result


def main(argv: list[str]) -> int:
    """``-h`` prints the usage and the config; otherwise :func:`run`, exit 0, or 2 with one ``error:`` line."""
    return script_main(run, __doc__, HERE, argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
