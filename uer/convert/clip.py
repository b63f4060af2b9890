"""CLIP (Radford et al. 2021) <-> ``transformers`` ``CLIPModel``: the causal text tower, the ViT
image tower (patch convolution without bias, ``pre_layrnorm``, ``post_layernorm``), both
projections (no bias) and the logit scale, onto the ``clip_*`` presets (``model.text.*``,
``model.vision.*``; DualEmbedding / DualEncoder ``first`` = text, ``second`` = image; ``clr`` target).

Text pooling: ``CLIPTextTransformer`` reads the caption's feature at the argmax of ``input_ids`` when
``text_config.eos_token_id == 2`` (checkpoints made before transformers PR #24773), else at the first
``eos_token_id``: uer's ``text_pooling: argmax`` / ``eos``. uer's own ``last`` (the last real token,
the end token of a right-padded caption) is exported as the first-eos rule with the tokenizer's end
token (eos, else sep) and the config.json entry ``uer_text_pooling: last``, so the import restores it.
Both towers share uer's ``model.activation`` and ``model.norm_eps``; a config whose towers differ
there is refused. ``vision_model.post_layernorm`` is the image tower's final norm: uer applies it at
every position, CLIP at the class position the features are read from (same features).
"""
from __future__ import annotations

from uer.convert.bert import activation
from uer.convert.spec import ConfigKey, Family, Head, Lead, Rule, fused_qkv, params
from uer.convert.vit import image_keys
from uer.data.image_text import CLIP_MEAN, CLIP_STD
from uer.errors import UerError

LEGACY_EOS = 2
"""``text_config.eos_token_id`` value that selects transformers' legacy argmax pooling."""
POOLING_KEY = "uer_text_pooling"
"""config.json entry recording uer's ``last`` pooling (absent for the two HF rules)."""
SHARED = ("hidden_act", "layer_norm_eps")
"""Settings uer's CLIP towers share (``model.activation``, ``model.norm_eps``)."""


def pooling(eos_token_id, config) -> str:
    """uer's ``target.clr.text_pooling`` for an HF config (see the module docstring).

    Raises:
        UerError: several end ids (a list), or a recorded pooling uer does not write.
    """
    recorded = getattr(config, POOLING_KEY, None)
    if recorded is not None:
        if recorded != "last":
            raise UerError(f"{POOLING_KEY}={recorded!r} is not a uer text pooling written by an export (last)")
        return recorded
    if not isinstance(eos_token_id, int):
        raise UerError(f"text_config.eos_token_id={eos_token_id!r} has no uer equivalent (one id is needed)")
    return "argmax" if eos_token_id == LEGACY_EOS else "eos"


def eos_id(eos_token_id, config):
    """uer's ``target.clr.eos_token_id``: the id for the first-eos rule, None for the other two."""
    return eos_token_id if pooling(eos_token_id, config) == "eos" else None


def hf_eos(_value, model_cfg):
    """``text_config.eos_token_id`` of a uer model: 2 for argmax, the pooling id for eos, None for
    ``last`` (then the tokenizer's end token, :func:`token_values`)."""
    clr = model_cfg.target.clr
    return {"argmax": LEGACY_EOS, "eos": clr.eos_token_id}.get(clr.text_pooling)


def tower_check(config) -> str | None:
    """The problem with towers whose shared settings (:data:`SHARED`) differ, or None."""
    for key in SHARED:
        text, vision = getattr(config.text_config, key), getattr(config.vision_config, key)
        if text != vision:
            return f"text_config.{key}={text!r} and vision_config.{key}={vision!r} (uer's towers share it)"
    return None


def token_values(model_cfg, tokenizer) -> dict:
    """``text_config`` token ids of a uer model taken from its tokenizer: pad, bos (else cls), and
    for ``last`` pooling the end token as eos (eos, else sep).

    Raises:
        UerError: ``last`` pooling without a tokenizer that has an end token.
    """
    def first(*roles):
        ids = [getattr(tokenizer, f"{r}_token_id", None) for r in roles] if tokenizer is not None else []
        return next((i for i in ids if i is not None), None)

    end = first("eos", "sep")
    if model_cfg.target.clr.text_pooling == "last" and end is None:
        raise UerError("text_pooling=last exports as CLIP's first-eos pooling, which needs the checkpoint's "
                       "tokenizer and its end token (eos or sep)")
    values = {"text_config.pad_token_id": first("pad"), "text_config.bos_token_id": first("bos", "cls"),
              "text_config.eos_token_id": end}
    return {k: v for k, v in values.items() if v is not None}


def image_processor(model_cfg) -> dict:
    """The ``preprocessor_config.json`` of transformers' ``CLIPImageProcessor`` that gives the
    pixels of :func:`uer.data.image_text.clip_pixels`: shorter side to the image size (bicubic),
    center crop, /255, CLIP's mean and std."""
    size = model_cfg.vision.image_size
    return {"image_processor_type": "CLIPImageProcessor", "processor_class": "CLIPProcessor",
            "do_convert_rgb": True, "do_resize": True, "size": {"shortest_edge": size}, "resample": 3,
            "do_center_crop": True, "crop_size": {"height": size, "width": size}, "do_rescale": True,
            "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": list(CLIP_MEAN),
            "image_std": list(CLIP_STD)}


def tower(hf: str, uer: str, layer: str) -> tuple[Rule, ...]:
    """The pre-LN layers of one tower: ``hf`` = ``text_model`` / ``vision_model``, ``uer`` = its
    encoder (``encoder.first``), ``layer`` = its placeholder (``f`` / ``s``)."""
    src, dst = f"{hf}.encoder.layers.{{{layer}}}", f"{uer}.layers.{{{layer}}}"
    return (
        *params(f"{src}.layer_norm1", f"{dst}.attention_norm"),
        *fused_qkv(f"{src}.self_attn.q_proj", f"{src}.self_attn.k_proj", f"{src}.self_attn.v_proj",
                   f"{dst}.attention.qkv"),
        *params(f"{src}.self_attn.out_proj", f"{dst}.attention.out"),
        *params(f"{src}.layer_norm2", f"{dst}.ffn_norm"),
        *params(f"{src}.mlp.fc1", f"{dst}.ffn.up"),
        *params(f"{src}.mlp.fc2", f"{dst}.ffn.down"),
    )


def sizes(hf: str, uer: str) -> tuple[ConfigKey, ...]:
    """Width, depth, heads and FFN width of one tower."""
    return (ConfigKey(f"{hf}.hidden_size", f"{uer}.dim"), ConfigKey(f"{hf}.num_hidden_layers", f"{uer}.num_layers"),
            ConfigKey(f"{hf}.num_attention_heads", f"{uer}.num_heads"),
            ConfigKey(f"{hf}.intermediate_size", f"{uer}.ffn_dim"))


FAMILY = Family(
    model_type="clip",
    presets=("clip_b32", "clip_b16", "clip_tiny"),
    prefix="",
    config=(
        ConfigKey("text_config.vocab_size", "vocab_size"),
        ConfigKey("text_config.max_position_embeddings", "max_seq_length"),
        *sizes("text_config", "text"),
        *sizes("vision_config", "vision"),
        *image_keys("vision_config.", "vision."),
        *(ConfigKey(f"{t}_config.hidden_act", "activation", activation) for t in ("text", "vision")),
        *(ConfigKey(f"{t}_config.layer_norm_eps", "norm_eps") for t in ("text", "vision")),
        ConfigKey("text_config.attention_dropout", "encoder.first.attention.dropout"),
        ConfigKey("vision_config.attention_dropout", "encoder.second.attention.dropout"),
        ConfigKey("text_config.initializer_range", "init_std"),
        ConfigKey("projection_dim", "projection_dim"),
        ConfigKey("logit_scale_init_value", "target.clr.logit_scale_init"),
        ConfigKey("text_config.eos_token_id", "target.clr.eos_token_id", eos_id, hf_eos),
        ConfigKey(POOLING_KEY, "target.clr.text_pooling", lambda _v, c: pooling(c.text_config.eos_token_id, c),
                  lambda v, _m: v if v == "last" else None),
    ),
    fixed={},
    check=tower_check,
    body=(
        Rule(("text_model.embeddings.token_embedding.weight",), "embedding.first.word.weight"),
        Rule(("text_model.embeddings.position_embedding.weight",), "embedding.first.position.weight"),
        *tower("text_model", "encoder.first", "f"),
        *params("text_model.final_layer_norm", "encoder.first.final_norm"),
        Rule(("vision_model.embeddings.class_embedding",), "embedding.second.patch.cls", Lead(2)),
        Rule(("vision_model.embeddings.patch_embedding.weight",), "embedding.second.patch.proj.weight"),
        Rule(("vision_model.embeddings.position_embedding.weight",), "embedding.second.patch.position", Lead(1)),
        *params("vision_model.pre_layrnorm", "embedding.second.norm"),
        *tower("vision_model", "encoder.second", "s"),
        *params("vision_model.post_layernorm", "encoder.second.final_norm"),
        Rule(("text_projection.weight",), "target.clr.text_projection.weight"),
        Rule(("visual_projection.weight",), "target.clr.visual_projection.weight"),
        Rule(("logit_scale",), "target.clr.logit_scale"),
    ),
    heads=(Head("CLIPModel", "AutoModel"),),
    max_positions=lambda m: m.max_seq_length,
    token_values=token_values,
    image_processor=image_processor,
    tokenizer_class="CLIPTokenizerFast",
)
