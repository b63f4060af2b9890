"""The rendered King James verses (``data.corpus=builtin:kjv-rendered``): seeded rendering, whole verses
held out, and a few pairs through the processor, the collator and the CLIP evaluator."""
from __future__ import annotations

import io
import random

import datasets
import numpy as np
import pytest
import torch
from PIL import Image
from uer.preprocess.image_text import ImageTextProcessor
from uer.preprocess.images import _png
from uer.preprocess.rendered_text import CANVAS, RENDERED_KJV, SPAN_WORDS, Rendering, render

from uer.config import compose_config, resolve
from uer.data.image_text import ImageTextCollator
from uer.data.loader import split_indices
from uer.data.tokenizer import Tokenizer
from uer.models import build_model
from uer.train.assemble import Data
from uer.train.contrastive_eval import evaluate_contrastive


@pytest.fixture(scope="module")
def plan():
    return ImageTextProcessor(corpus=RENDERED_KJV).plan()


def test_same_seed_same_bytes_and_the_words_are_drawn():
    first, again = Rendering("In the beginning God created the", 0), Rendering("In the beginning God created the", 0)
    assert _png(first.pixels()) == _png(again.pixels())
    assert _png(first.pixels()) != _png(Rendering(first.text, 1).pixels())  # the seed moves, sizes, shades it
    pixels = first.pixels()
    assert pixels.shape == (CANVAS, CANVAS) and pixels.dtype == np.uint8
    assert pixels.min() <= 70 and pixels.max() >= 200  # ink on paper
    # the draws vary across images: not every image has the same font size, offset and shades
    shapes = {render("And God said", random.Random(seed)).tobytes() for seed in range(8)}
    assert len(shapes) == 8


def test_held_out_verses_are_disjoint_from_training(plan):
    captions = [caption for shard in plan.shards for _, caption, _ in shard]
    assert plan.stats == {"pairs": len(captions)} and len(captions) > 25_000
    assert all(1 <= len(c.split()) <= SPAN_WORDS for c in captions)
    train, held_out = split_indices(len(captions), 256, 0)
    assert len(held_out) == 256
    assert not {captions[i].lower() for i in held_out} & {captions[i].lower() for i in train}
    assert ImageTextProcessor(corpus=RENDERED_KJV, seed=1).plan().digest != plan.digest  # the cache key follows the seed


def test_rows_through_processor_collator_and_evaluator(plan):
    tokenizer = Tokenizer.load("builtin:kjv-wordpiece")
    processor = ImageTextProcessor(corpus=RENDERED_KJV)
    shard = plan.shards[0][:6]
    rows = list(processor.generate(shard, tokenizer))
    for (source, caption, _), row in zip(shard, rows):
        assert row["label"] == -1
        decoded = tokenizer.decode(row["input_ids"], skip_special_tokens=True)
        assert decoded.replace(" ", "") == caption.lower().replace(" ", "")  # the image's own words
        image = Image.open(io.BytesIO(row["image"]))
        assert image.mode == "L" and np.array_equal(np.asarray(image), source.pixels())
    cfg = resolve(compose_config(["+model=clip_tiny", f"model.vocab_size={tokenizer.vocab_size}",
                                  f"model.vision.image_size={CANVAS}", "model.vision.patch_size=8"]))
    collate = ImageTextCollator(tokenizer, cfg.model.vision.image_size)
    table = datasets.Dataset.from_list(rows)
    assert collate(table[:2], [])["pixel_values"].shape == (2, 3, CANVAS, CANVAS)
    result = evaluate_contrastive(build_model(cfg.model), Data(table, np.arange(6), collate, 4), tokenizer,
                                  torch.device("cpu"))
    assert set(result) == {"i2t_r@1", "i2t_r@5", "t2i_r@1", "t2i_r@5"}  # no classes: no zero-shot accuracy
    assert all(0 <= v <= 1 for v in result.values())
