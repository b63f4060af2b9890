"""CLIP (Radford et al. 2021): the contrastive target against transformers' loss, the gathered loss
of 2 processes against 1 process with the whole batch, pixels against CLIPImageProcessor, the
image-caption processor and the zero-shot/retrieval evaluator."""
from __future__ import annotations

import io
import math

import datasets
import numpy as np
import pytest
import torch
from checks import assert_parity
from PIL import Image
from sklearn.datasets import load_sample_images
from torch import multiprocessing as mp
from transformers import CLIPImageProcessorPil
from transformers.models.clip.modeling_clip import image_text_contrastive_loss
from uer.preprocess.image_text import ImageTextProcessor, class_prompts

from uer.config import compose_config, resolve
from uer.data.image_text import ImageTextCollator, clip_pixels
from uer.data.tokenizer import Tokenizer
from uer.errors import UerError
from uer.layers.streams import Stream, TwoStreams
from uer.models import build_model
from uer.targets.clr import ClrTarget
from uer.train.assemble import Data
from uer.train.contrastive_eval import evaluate_contrastive, recall_at_k


def streams(b: int = 5, seed: int = 0) -> tuple[TwoStreams, dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(b, 7, dtype=torch.bool)
    mask[1, 4:] = False
    text, image = torch.randn(b, 7, 11, generator=g), torch.randn(b, 10, 13, generator=g)
    return TwoStreams(Stream(text, mask), Stream(image, None)), {"pixel_values": torch.zeros(b, 3, 2, 2),
                                                                 "input_ids": torch.randint(5, 9, (b, 7), generator=g)}


def test_clr_loss_is_clips_symmetric_infonce():
    torch.manual_seed(0)
    target = ClrTarget(11, 13, 6)
    hidden, batch = streams()
    out = target(hidden, batch)
    last = torch.tensor([6, 3, 6, 6, 6])  # the last real token of each caption
    t = torch.nn.functional.normalize(target.text_projection(hidden.first.x[torch.arange(5), last]), dim=-1)
    v = torch.nn.functional.normalize(target.visual_projection(hidden.second.x[:, 0]), dim=-1)
    logits_per_image = math.exp(math.log(1 / 0.07)) * v @ t.T
    assert_parity(out.logits["clr"], logits_per_image)
    assert_parity(out.loss, image_text_contrastive_loss(logits_per_image.T))
    assert out.terms["clr"].num_items == 5
    # the scale is clamped at 100: a larger learned value scores as 100
    with torch.no_grad():
        target.logit_scale.fill_(6.0)
    assert_parity(target(hidden, batch).logits["clr"], 100 * v @ t.T)


def test_text_pooling_rules():
    hidden, batch = streams()
    batch["input_ids"][:, :] = 5
    batch["input_ids"][torch.arange(5), torch.tensor([6, 3, 6, 6, 6])] = 2  # the end token, id 2
    batch["input_ids"][0, 6] = 9
    batch["input_ids"][0, 2] = 2
    pooled = {}
    for rule in ("last", "eos", "argmax"):
        torch.manual_seed(0)
        target = ClrTarget(11, 13, 6, text_pooling=rule, eos_token_id=2)
        pooled[rule] = target.text_features(hidden.first, batch["input_ids"])
    assert torch.equal(pooled["last"][1:], pooled["eos"][1:])  # first end token == last real token
    assert not torch.allclose(pooled["last"][0], pooled["eos"][0])  # row 0: an earlier end token (position 2)
    assert torch.equal(pooled["argmax"][0], pooled["last"][0])  # row 0: the largest id (9) sits last
    with pytest.raises(ValueError, match="eos_token_id"):
        ClrTarget(11, 13, 6, text_pooling="eos")


def _gathered_gradients(rank: int, world: int, port: int, out) -> None:
    """One rank of a 2-process run: its half of the batch, the trainer's loss scaling (× world / all
    pairs), DDP's gradient mean; rank 0 also computes one process with the whole batch."""
    torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    torch.manual_seed(0)
    target = ClrTarget(11, 13, 6)
    hidden, batch = streams(8)
    half = slice(4 * rank, 4 * rank + 4)
    mine = TwoStreams(Stream(hidden.first.x[half], hidden.first.mask[half]), Stream(hidden.second.x[half], None))
    output = target(mine, {k: v[half] for k, v in batch.items()})
    (output.terms["clr"].loss_sum * world / 8).backward()
    for p in target.parameters():
        torch.distributed.all_reduce(p.grad)
        p.grad /= world
    if rank == 0:
        torch.distributed.destroy_process_group()  # the single-process reference gathers nothing
        single = ClrTarget(11, 13, 6)
        single.load_state_dict(target.state_dict())
        single(hidden, batch).loss.backward()
        # numpy arrays travel by value: a tensor would travel as a shared-memory handle that dies with this process
        out.put({n: (p.grad.numpy(), single.get_parameter(n).grad.numpy()) for n, p in target.named_parameters()})
    else:
        torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_two_processes_gather_features_and_match_one_process_with_the_whole_batch():
    port = 29500 + np.random.default_rng().integers(0, 2000)
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_gathered_gradients, args=(r, 2, int(port), queue)) for r in range(2)]
    for p in procs:
        p.start()
    grads = queue.get(timeout=120)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    for name, (two, one) in grads.items():
        assert_parity(torch.from_numpy(two), torch.from_numpy(one), msg=name)


def test_pixels_equal_clip_image_processor_on_real_images():
    photos = load_sample_images().images  # two real photographs shipped with scikit-learn
    digit = Image.fromarray((np.arange(64, dtype=np.uint8) * 4).reshape(8, 8))  # grayscale, upscaled
    images = [Image.fromarray(a) for a in photos] + [Image.fromarray(photos[0][:301, :200]), digit]
    for size in (224, 37):
        reference = CLIPImageProcessorPil(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
        for image in images:
            assert np.array_equal(clip_pixels(image, size), reference(image, return_tensors="np")["pixel_values"][0])


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    """Six captioned images in a TSV and a JSONL: rows from the processor, as a datasets table."""
    root = tmp_path_factory.mktemp("pairs")
    rng = np.random.default_rng(0)
    lines = []
    for i in range(6):
        Image.fromarray(rng.integers(0, 255, (12, 9, 3), dtype=np.uint8)).save(root / f"{i}.png")
        lines.append(f"{i}.png\tpicture number {['one', 'two', 'three'][i % 3]}")
    (root / "pairs.tsv").write_text("image_path\tcaption\n" + "\n".join(lines) + "\n")
    (root / "pairs.jsonl").write_text('{"image_path": "0.png", "caption": "a picture"}\n')
    return root


def rows_of(processor: ImageTextProcessor, tokenizer) -> list[dict]:
    return [row for shard in processor.plan().shards for row in processor.generate(shard, tokenizer)]


def test_processor_rows_and_bad_lines(pairs):
    tokenizer = Tokenizer.load("builtin:kjv-wordpiece")
    rows = rows_of(ImageTextProcessor(corpus=str(pairs / "pairs.tsv"), seq_length=4), tokenizer)
    assert len(rows) == 6 and {r["label"] for r in rows} == {-1}
    assert [r["input_ids"][0] for r in rows] == [tokenizer.cls_token_id] * 6
    assert all(len(r["input_ids"]) <= 4 and r["input_ids"][-1] == tokenizer.sep_token_id for r in rows)
    assert Image.open(io.BytesIO(rows[0]["image"])).size == (9, 12)
    (jsonl,) = rows_of(ImageTextProcessor(corpus=str(pairs / "pairs.jsonl")), tokenizer)
    assert tokenizer.decode(jsonl["input_ids"], skip_special_tokens=True) == "a picture"
    (pairs / "bad.tsv").write_text("missing.png\ta caption\n")
    with pytest.raises(UerError, match="line 1: image .*missing.png not found"):
        ImageTextProcessor(corpus=str(pairs / "bad.tsv")).plan()
    assert class_prompts()[7][:2] == ["a handwritten seven", "the digit 7 written by hand"]


def test_recall_at_k_counts_any_relevant_item():
    similarity = torch.tensor([[0.9, 0.1, 0.5], [0.8, 0.2, 0.1], [0.1, 0.2, 0.3]])
    relevant = torch.eye(3, dtype=torch.bool)
    relevant[1, 0] = True  # pair 1 has the same caption as pair 0
    assert recall_at_k(similarity, relevant, ks=(1, 2)) == {1: 1.0, 2: 1.0}
    assert recall_at_k(similarity, torch.eye(3, dtype=torch.bool), ks=(1, 3)) == {1: pytest.approx(2 / 3), 3: 1.0}


def test_evaluator_scores_held_out_pairs(pairs):
    tokenizer = Tokenizer.load("builtin:kjv-wordpiece")
    rows = rows_of(ImageTextProcessor(corpus=str(pairs / "pairs.tsv")), tokenizer)
    for i, row in enumerate(rows[:3]):
        row["label"] = i  # as digits: zero-shot accuracy is scored over labelled rows
    table = datasets.Dataset.from_list(rows)
    cfg = resolve(compose_config(["+model=clip_tiny", f"model.vocab_size={tokenizer.vocab_size}"]))
    model = build_model(cfg.model)
    collate = ImageTextCollator(tokenizer, cfg.model.vision.image_size)
    result = evaluate_contrastive(model, Data(table, np.arange(6), collate, 4), tokenizer, torch.device("cpu"))
    assert set(result) == {"i2t_r@1", "i2t_r@5", "t2i_r@1", "t2i_r@5", "zero_shot_acc"}
    assert all(0 <= v <= 1 for v in result.values())
    assert result["i2t_r@5"] == 1.0  # 3 distinct captions: 5 best always hold the right one


@pytest.mark.slow  # a short clip_tiny run, then the script on its checkpoint and on the exported CLIPModel
def test_zero_shot_script_recomputes_the_runs_held_out_metrics(tmp_path, capsys):
    """``examples/zero_shot.py`` on a checkpoint prints the held-out metrics its run logged (same split,
    tokenization and pixels), and the same figures for the checkpoint exported to a Hugging Face CLIPModel."""
    import json
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from examples import zero_shot
    from uer.cli.convert import main as convert_main
    from uer.train.run import pretrain

    out = tmp_path / "run"
    pretrain(compose_config(["+model=clip_tiny", f"trainer.output_dir={out}", "trainer.max_steps=4",
                             "trainer.progress=false", "trainer.eval_every=4", "data.eval_samples=64", "data.num_proc=1"]))
    logged = [r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if r["split"] == "eval"][-1]
    (checkpoint,) = (out / "checkpoints").iterdir()
    assert convert_main([str(checkpoint), str(tmp_path / "hf")]) == 0
    for source in (checkpoint, tmp_path / "hf"):
        capsys.readouterr()
        assert zero_shot.main([str(source), "--samples", "64"]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines[0].startswith("held-out pairs "), lines
        printed = dict(line.split() for line in lines[1:])
        for name in ("i2t_r@1", "i2t_r@5", "t2i_r@1", "t2i_r@5", "zero_shot_acc"):
            assert float(printed[name]) == pytest.approx(logged[name], abs=6e-5), (source, name)


def test_init_from_takes_the_sizes_of_both_towers():
    """``+model=clip_b32 trainer.init_from=<a smaller CLIP>`` trains the checkpoint's model: the sizes
    of ``model.text``/``model.vision`` (sections that are not parts) and ``projection_dim`` come from it."""
    from uer.models.pretrained import model_differences
    from uer.train.run import take_sizes

    preset, checkpoint = compose_config(["+model=clip_b32"]).model, resolve(compose_config(["+model=clip_tiny"])).model
    take_sizes(preset, checkpoint)
    diffs = model_differences(resolve(preset), checkpoint)
    assert diffs == ["model.init_std: 0.02 vs 0.1"], diffs  # a size-independent setting stays the preset's
