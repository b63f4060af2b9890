"""BEiT (Bao et al. 2022) <-> ``transformers`` ``BeitForMaskedImageModeling`` /
``BeitForImageClassification``, onto the ``beit_*`` presets (pre-LN layers with LayerScale, 2D
relative position bias, a learned [MASK] patch).

What maps, and how:

- Relative position bias: ``use_shared_relative_position_bias`` is the stack-wide
  ``model.encoder.position_bias`` (the presets' default), ``use_relative_position_bias`` a table per
  layer, ``model.encoder.attention.branch.position_bias``; either, both or neither.
  ``use_absolute_position_embeddings`` and ``use_mask_token`` are the patch embedding's
  ``position`` and ``mask_token``. Tensors that exist only with these settings are optional rules.
- LayerScale: ``lambda_1`` / ``lambda_2`` are the ``gamma`` of the attention and feed-forward
  :class:`uer.layers.layer_scale.LayerScale`; ``layer_scale_init_value`` <= 0 (no LayerScale) is refused.
- Attention: Hugging Face's key projection has no bias. uer's fused q/k/v has one; a key bias adds
  q·b_k to every score of a query's row, which softmax ignores, so import sets it to zero and
  export drops it (the same function both ways; a uer-trained key bias does not survive export).
- ``use_mean_pooling``: no final norm on the stack (``model.encoder.final_norm: false``); for
  classification the ``cls`` target's ``pooling: patches`` + ``norm`` (Hugging Face's
  ``beit.pooler.layernorm``). Without it: the final norm (``beit.layernorm``) and the [CLS] vector.
- Masked image modeling: the head (``layernorm``, ``lm_head`` over ``vocab_size`` visual tokens) is
  the ``mim`` target's ``norm`` and ``head`` over ``codebook_size`` tokens. The visual tokenizer does
  not map: BEiT's tokens come from a dVAE outside the model, uer's from the k-means codebook buffer
  ``target.mim.tokenizer.codebook``. Export drops the codebook; import leaves it zero (unfitted, so
  pretraining fits it to the data before its first step), listed under ``convert.initialized``.
- Not modelled: ``drop_path_rate`` (stochastic depth, training only: kept in config.json, uer trains
  without it) and the segmentation/backbone settings (kept, unused by these two heads).

Pixels: an export writes the ``BeitImageProcessor`` settings of :class:`uer.data.images.ImageCollator`
(bicubic resize to the square size, no crop, mean = std = 0.5).

Known transformers problem (5.24): with ``use_mean_pooling=False`` (the presets' final norm) a
``BeitForMaskedImageModeling.from_pretrained`` swaps ``beit.layernorm`` and the head's ``layernorm``
while loading, also for directories transformers saved itself; the files are right (``AutoModel``,
i.e. ``BeitModel``, loads its norm correctly, and so does uer).
"""
from __future__ import annotations

import torch

from uer.convert.bert import activation
from uer.convert.spec import QKV, ConfigKey, Family, Head, Rule, Transform, params
from uer.convert.vit import image_keys, square, square_image_processor

LAYER = "beit.encoder.layer.{i}"
UER_LAYER = "encoder.layers.{i}"
CLASSIFICATION = "BeitForImageClassification"
BIAS_TARGET = "uer.layers.relative_position_2d.RelativePositionBias2d"
HF_DEFAULT_LABELS = 2
"""transformers' ``num_labels`` when a config names none (uer's MIM presets leave it null)."""


class NoKeyBias(Transform):
    """Hugging Face's query and value biases <-> uer's fused q/k/v bias [b_q; 0; b_v] (see the module
    docstring: the key bias does not change attention, so export drops it)."""

    arity = 2

    def to_uer(self, tensors):
        query, value = tensors
        return torch.cat([query, torch.zeros_like(query), value])

    def to_hf(self, tensor):
        query, _key, value = tensor.chunk(3)
        return [query.contiguous(), value.contiguous()]


def optional(rules: tuple[Rule, ...]) -> tuple[Rule, ...]:
    """The same rules, marked as present in some configs only."""
    return tuple(Rule(r.hf, r.uer, r.transform, optional=True) for r in rules)


def bias_config(enabled, config) -> dict | None:
    """The uer part config of a 2D relative position bias for ``config``'s grid, or None."""
    if not enabled:
        return None
    return {"_target_": BIAS_TARGET, "_partial_": True, "num_heads": config.num_attention_heads,
            "image_size": square(config.image_size, config), "patch_size": square(config.patch_size, config)}


def layer_scale_check(config) -> str | None:
    """The problem with a config without LayerScale (uer's BEiT presets scale both branches), or None."""
    value = config.layer_scale_init_value
    return None if value > 0 else f"layer_scale_init_value={value} (no LayerScale; uer's BEiT layers have it)"


def image_processor(model_cfg) -> dict:
    """The ``preprocessor_config.json`` of transformers' ``BeitImageProcessor`` giving the pixels of
    :class:`uer.data.images.ImageCollator` (:func:`uer.convert.vit.square_image_processor`)."""
    return {**square_image_processor("BeitImageProcessor", model_cfg), "do_reduce_labels": False}


FAMILY = Family(
    model_type="beit",
    presets=("beit_base", "beit_tiny"),
    prefix="beit.",
    config=(
        ConfigKey("hidden_size", "dim"),
        ConfigKey("num_hidden_layers", "num_layers"),
        ConfigKey("num_attention_heads", "num_heads"),
        ConfigKey("intermediate_size", "ffn_dim"),
        ConfigKey("hidden_act", "encoder.ffn.branch.activation", activation),
        ConfigKey("hidden_dropout_prob", "dropout"),
        ConfigKey("attention_probs_dropout_prob", "encoder.attention.branch.dropout"),
        ConfigKey("initializer_range", "init_std"),
        ConfigKey("layer_norm_eps", "norm_eps"),
        *image_keys(),
        ConfigKey("vocab_size", "codebook_size"),
        ConfigKey("use_mask_token", "embedding.parts.patch.mask_token"),
        ConfigKey("use_absolute_position_embeddings", "embedding.parts.patch.position"),
        ConfigKey("use_shared_relative_position_bias", "encoder.position_bias", bias_config,
                  lambda v, _m: v is not None),
        ConfigKey("use_relative_position_bias", "encoder.attention.branch.position_bias", bias_config,
                  lambda v, _m: v is not None),
        ConfigKey("layer_scale_init_value", "encoder.attention.init"),
        ConfigKey("layer_scale_init_value", "encoder.ffn.init"),
        ConfigKey("use_mean_pooling", "encoder.final_norm", lambda v, _c: False if v else None,
                  lambda v, _m: v is False),
        ConfigKey("use_mean_pooling", "target.cls.pooling", lambda v, _c: "patches" if v else "first",
                  lambda v, _m: v == "patches", heads=(CLASSIFICATION,)),
        ConfigKey("use_mean_pooling", "target.cls.norm", lambda v, _c: bool(v), lambda v, _m: bool(v),
                  heads=(CLASSIFICATION,)),
        ConfigKey("num_labels", "num_labels", to_hf=lambda v, _m: HF_DEFAULT_LABELS if v is None else v,
                  heads=(CLASSIFICATION,)),
    ),
    fixed={},
    check=layer_scale_check,
    ignored=(r"(^|\.)relative_position_index$",),
    body=(
        Rule(("beit.embeddings.cls_token",), "embedding.patch.cls"),
        *optional((Rule(("beit.embeddings.mask_token",), "embedding.patch.mask_token"),
                   Rule(("beit.embeddings.position_embeddings",), "embedding.patch.position"),
                   Rule(("beit.encoder.relative_position_bias.relative_position_bias_table",),
                        "encoder.position_bias.table"),
                   Rule((f"{LAYER}.attention.attention.relative_position_bias.relative_position_bias_table",),
                        f"{UER_LAYER}.attention.branch.position_bias.table"),
                   *params("beit.layernorm", "encoder.final_norm"))),
        *params("beit.embeddings.patch_embeddings.projection", "embedding.patch.proj"),
        *params(f"{LAYER}.layernorm_before", f"{UER_LAYER}.attention_norm"),
        Rule(tuple(f"{LAYER}.attention.attention.{p}.weight" for p in ("query", "key", "value")),
             f"{UER_LAYER}.attention.branch.qkv.weight", QKV),
        Rule((f"{LAYER}.attention.attention.query.bias", f"{LAYER}.attention.attention.value.bias"),
             f"{UER_LAYER}.attention.branch.qkv.bias", NoKeyBias()),
        *params(f"{LAYER}.attention.output.dense", f"{UER_LAYER}.attention.branch.out"),
        Rule((f"{LAYER}.lambda_1",), f"{UER_LAYER}.attention.gamma"),
        *params(f"{LAYER}.layernorm_after", f"{UER_LAYER}.ffn_norm"),
        *params(f"{LAYER}.intermediate.dense", f"{UER_LAYER}.ffn.branch.up"),
        *params(f"{LAYER}.output.dense", f"{UER_LAYER}.ffn.branch.down"),
        Rule((f"{LAYER}.lambda_2",), f"{UER_LAYER}.ffn.gamma"),
    ),
    heads=(
        Head("BeitForMaskedImageModeling", "AutoModel",
             rules=(*params("layernorm", "target.mim.norm"), *params("lm_head", "target.mim.head")),
             uer_only=("target.mim.tokenizer.",)),
        Head(CLASSIFICATION, "AutoModelForImageClassification", target="cls",
             rules=(*optional(params("beit.pooler.layernorm", "target.cls.norm")),
                    *params("classifier", "target.cls.classifier"))),
    ),
    image_processor=image_processor,
)
