"""Every YAML under conf/ composes, every preset builds, and wrong model arguments get one clear line."""
from __future__ import annotations

import importlib.resources

import pytest
import torch

from uer.config import compose_config, presets, resolve
from uer.errors import UerError
from uer.models import build_model

CONF = importlib.resources.files("uer.conf")
EXPECTED = {"bert_base", "bert_mini", "bert_tiny", "roberta_base", "albert_base", "gpt2", "gpt2_tiny",
            "vit_base_16", "vit_tiny", "clip_tiny", "clip_b32", "clip_b16", "t5_small", "t5_base", "t5_v1_1_small", "bart_base", "pegasus_base",
            "transformer_base"}


def sized(preset: str) -> list[str]:
    cfg = compose_config([f"+model={preset}"])
    extra = []
    if "vocab_size" in cfg.model:
        extra.append("model.vocab_size=97")
    if "num_labels" in cfg.model:
        extra.append("model.num_labels=5")
    return [f"+model={preset}", *extra]


def test_issue_presets_exist():
    assert EXPECTED <= set(presets())


@pytest.mark.parametrize("preset", presets())
def test_preset_builds_at_full_size(preset):
    """Real sizes compose and build (on the meta device: shapes without memory or initialization;
    test_presets_train.py trains every preset at tiny sizes)."""
    cfg = resolve(compose_config(sized(preset)))
    with torch.device("meta"):
        model = build_model(cfg.model)
    assert sum(p.numel() for p in model.parameters()) > 0
    # the data processor named by the preset matches the objective
    processor = cfg.data.processor._target_.rsplit(".", 1)[1]
    if cfg.data.collator._target_.endswith(".MaskedImageCollator"):  # images with masked patches (BEiT)
        processor = "MaskedImages"
    if cfg.data.collator._target_.endswith(".ViltCollator"):  # image–text pairs with ITM negatives and masking
        processor = "ViltPairs"
    if cfg.data.collator._target_.endswith(".Wav2Vec2Collator"):  # waveforms with masked frames and distractors
        processor = "Wav2Vec2Frames"
    targets = set(cfg.model.target) - {"_target_", "weights"}
    if targets == {"bilm"}:  # ELMo: a causal LM in each direction, on the causal LM data
        targets = {"lm"}
    assert {"ViltPairs": {"mlm", "itm"}, "NspProcessor": {"mlm", "sp"}, "SopProcessor": {"mlm", "sp"}, "FullSentencesProcessor": {"mlm"},
            "CausalLmProcessor": {"lm"}, "ImageProcessor": {"cls"}, "SpanCorruptionProcessor": {"lm"},
            "SentenceBlocksProcessor": {"lm"}, "ParallelProcessor": {"lm"}, "LlmPretrainProcessor": {"lm"},
            "PrefixLmProcessor": {"lm"}, "MaskedImages": {"mim"}, "ImageTextProcessor": {"clr"},
            "Wav2Vec2Frames": {"wav2vec2"}, "WaveformProcessor": {"ctc"}, "FbankProcessor": {"lm"}}[processor] == targets


@pytest.mark.parametrize("group,option", [
    (p.parent.name if p.parent.name != "conf" else "", p.stem)
    for p in [x for d in CONF.iterdir() if d.is_dir() and d.name != "model" for x in d.iterdir()]
    if p.name.endswith(".yaml")
])
def test_every_group_option_composes(group, option):
    base = "vit_tiny" if (group, option) == ("data", "image") else "beit_tiny" if (group, option) == ("data", "mim") \
        else "bert_tiny"
    base = "vilt_tiny" if (group, option) == ("data", "vilt") else "clip_tiny" if (group, option) == ("data", "image_text") else base
    base = "wav2vec2_tiny" if (group, option) == ("data", "wav2vec2") else base
    cfg = resolve(compose_config([f"+model={base}", f"{group}={option}"]))
    assert cfg[group] is not None


@pytest.mark.parametrize("part", ["embedding", "encoder", "target"])
def test_every_model_part_composes_and_builds(part):
    options = sorted(p.name[:-5] for p in (CONF / "model" / part).iterdir() if p.name.endswith(".yaml"))
    assert options
    for option in options:
        base = "vit_tiny" if option in ("patch_pos", "cls") else "beit_tiny" if option.startswith("mim") else "bert_tiny"
        base = "vilt_tiny" if option in ("vilt", "itm", "mlm_itm") else base
        overrides = sized(base) + [f"model/{part}={option}"]
        if option == "patch_pos":
            overrides = sized("vit_tiny")
        if option in ("dual_clip", "clr"):  # CLIP's parts go together
            overrides = sized("clip_tiny")
        if option in ("waveform", "wav2vec2", "ctc"):  # wav2vec 2.0's parts read its conv and codebook sizes
            overrides = sized("wav2vec2_tiny") + [f"model/{part}={option}"]
        if option in ("rnn", "cnn"):  # BERT's MLM head reads the Transformer's FFN activation
            overrides = sized("lstm") + [f"model/{part}={option}"]
        if option == "speech":  # S2T's subsampler reads its filter-bank and conv sizes
            overrides = sized("s2t_tiny")
        if option == "seq2seq_lm_ctc":  # hybrid CTC/attention reads S2T's blank and eos ids
            overrides = sized("s2t_tiny") + [f"model/{part}={option}"]
        if option in ("dual_text", "dual", "cosine"):  # two-tower parts go together
            overrides = sized("bert_tiny") + ["model/embedding=dual_text", "model/encoder=dual", "model/target=cosine"]
        cfg = resolve(compose_config(overrides))
        build_model(cfg.model)


def test_parts_swap_from_the_command_line():
    cfg = resolve(compose_config(["+model=bert_mini", "model/target=mlm", "data=mlm", "model.vocab_size=50",
                                  "model.encoder.norm_position=pre", "optim=sgd", "scheduler=cosine"]))
    assert set(cfg.model.target) == {"_target_", "mlm"}
    assert cfg.data.processor._target_.endswith(".FullSentencesProcessor")
    assert cfg.optim.name == "sgd" and cfg.scheduler.name == "cosine"
    model = build_model(cfg.model)
    assert model.encoder.layers[0].pre_norm and model.encoder.final_norm is not None
    # the MLM decoder shares the word embedding, as declared in the target config
    assert model.target.mlm.decoder.weight is model.embedding.word.weight


def test_preset_sizes():
    cfg = resolve(compose_config(["+model=bert_mini"]))
    assert (cfg.model.num_layers, cfg.model.dim, cfg.model.num_heads, cfg.model.ffn_dim) == (4, 256, 4, 1024)
    albert = build_model(resolve(compose_config(["+model=albert_base", "model.vocab_size=100"])).model)
    assert len(albert.encoder.layers) == 1 and albert.encoder.num_layers == 12
    assert albert.embedding.word.weight.shape == (100, 128) and albert.embedding.project.out_features == 768
    gpt = resolve(compose_config(["+model=gpt2"]))
    assert gpt.model.encoder.norm_position == "pre" and gpt.model.encoder.mask == "causal"


@pytest.mark.parametrize("args,needle", [
    ([], "+model=<preset>"),
    (["model=bert_base"], "+model=bert_base"),
    (["+model=bert_huge"], "unknown model preset"),
    (["+model=bert_base", "data=nope"], "nope"),
])
def test_bad_model_arguments_are_one_line_errors(args, needle):
    with pytest.raises(UerError) as info:
        compose_config(args)
    message = str(info.value)
    assert needle in message and "\n" not in message
    if not args or args[0].startswith("model="):
        assert "bert_base" in message and "gpt2" in message  # lists the presets


def test_forward_shapes_with_padding():
    model = build_model(resolve(compose_config(sized("bert_tiny"))).model).eval()
    ids = torch.randint(5, 97, (3, 11))
    mask = torch.ones(3, 11, dtype=torch.long)
    mask[1, 7:] = 0
    hidden, out_mask = model.encode({"input_ids": ids, "attention_mask": mask})
    assert hidden.shape == (3, 11, 128) and out_mask.dtype == torch.bool
    # padding does not change the real positions' outputs
    alone, _ = model.encode({"input_ids": ids[1:2, :7]})
    torch.testing.assert_close(hidden[1, :7], alone[0], atol=1e-5, rtol=1e-5)
