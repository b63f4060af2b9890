"""ViLT (Kim et al. 2021) <-> ``transformers`` ``ViltForMaskedLM`` / ``ViltForImageAndTextRetrieval``.

The text embedding is BERT's and the patch embedding and pre-LN layers are ViT's, under
``vilt.embeddings.text_embeddings`` / ``vilt.embeddings`` / ``vilt.encoder``; the modality type
table ``vilt.embeddings.token_type_embeddings`` is :class:`uer.embeddings.SingleStreamEmbedding`'s
``modality``. Hugging Face's pooler (``vilt.pooler``) is the pooler of uer's ITM target:

- ``ViltForMaskedLM`` <-> the presets' MLM + ITM model; it has no matching classifier, so on import
  ``target.itm.classifier`` keeps uer's seeded initialization (listed under ``convert.initialized``)
  and export drops it.
- ``ViltForImageAndTextRetrieval`` <-> an ITM-only model (``model/target=itm``): its ``rank_output``
  is the one-logit ITM classifier, so it maps exactly.

An export writes the ``ViltImageProcessor`` settings of ``data=vilt``'s pixels (:func:`image_processor`).

Parity holds for images of the configured size with no pixel padding (what uer's collators make):
Hugging Face resamples the patches of a padded image at random (``max_image_length``) and
interpolates position embeddings to other image sizes, which uer does not model. Hugging Face also
visits the patches in a random order; that changes nothing but the order of the image outputs.
"""
from __future__ import annotations

from uer.convert.bert import ENCODER_KEYS
from uer.convert.spec import ConfigKey, Family, Head, Rule, fused_qkv, params
from uer.convert.vit import square
from uer.data.images import STANDARD_MEAN, STANDARD_STD

LAYER = "vilt.encoder.layer.{i}"
TEXT = "vilt.embeddings.text_embeddings"


def image_length_check(config) -> str | None:
    """The problem with a ``max_image_length`` that would make Hugging Face sample a subset of the
    patches at random (fewer than an image has), or None."""
    limit = getattr(config, "max_image_length", -1)
    patches = (square(config.image_size, config) // square(config.patch_size, config)) ** 2
    if limit is not None and 0 <= limit < patches:
        return f"max_image_length={limit} below the {patches} patches of an image (random patch sampling)"
    return None


def image_processor(model_cfg) -> dict:
    """The ``preprocessor_config.json`` of transformers' ``ViltImageProcessor`` that gives, for an
    image of the model's square size, the pixels of ``data=vilt``
    (:func:`uer.data.images.square_pixels`: bicubic, /255, mean = std = 0.5). ViLT's processor keeps
    a non-square image's aspect ratio (and pads it with a pixel mask) where uer's collator resizes
    it to the square: resize images to that size first for the same pixels. The size divisor is the
    patch size, so the square size stays as it is."""
    size = model_cfg.image_size
    return {"image_processor_type": "ViltImageProcessor", "processor_class": "ViltProcessor", "do_resize": True,
            "size": {"shortest_edge": size}, "size_divisor": model_cfg.patch_size, "resample": 3,
            "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": [STANDARD_MEAN] * 3,
            "image_std": [STANDARD_STD] * 3, "do_pad": True}


FAMILY = Family(
    model_type="vilt",
    presets=("vilt_base", "vilt_tiny"),
    prefix="vilt.",
    config=(
        ConfigKey("vocab_size", "vocab_size"),
        *ENCODER_KEYS,
        ConfigKey("max_position_embeddings", "max_seq_length"),
        ConfigKey("type_vocab_size", "embedding.streams.text.parts.segment.num_segments"),
        ConfigKey("initializer_range", "init_std"),
        ConfigKey("layer_norm_eps", "norm_eps"),
        ConfigKey("image_size", "image_size", square),
        ConfigKey("patch_size", "patch_size", square),
        ConfigKey("num_channels", "channels"),
    ),
    fixed={"qkv_bias": (True,), "modality_type_vocab_size": (2,), "num_images": (-1,)},
    check=image_length_check,
    body=(
        Rule((f"{TEXT}.word_embeddings.weight",), "embedding.text.word.weight"),
        Rule((f"{TEXT}.position_embeddings.weight",), "embedding.text.position.weight"),
        Rule((f"{TEXT}.token_type_embeddings.weight",), "embedding.text.segment.weight"),
        *params(f"{TEXT}.LayerNorm", "embedding.text.norm"),
        Rule(("vilt.embeddings.cls_token",), "embedding.image.patch.cls"),
        Rule(("vilt.embeddings.position_embeddings",), "embedding.image.patch.position"),
        *params("vilt.embeddings.patch_embeddings.projection", "embedding.image.patch.proj"),
        Rule(("vilt.embeddings.token_type_embeddings.weight",), "embedding.modality"),
        *params(f"{LAYER}.layernorm_before", "encoder.layers.{i}.attention_norm"),
        *fused_qkv(f"{LAYER}.attention.attention.query", f"{LAYER}.attention.attention.key",
                   f"{LAYER}.attention.attention.value", "encoder.layers.{i}.attention.qkv"),
        *params(f"{LAYER}.attention.output.dense", "encoder.layers.{i}.attention.out"),
        *params(f"{LAYER}.layernorm_after", "encoder.layers.{i}.ffn_norm"),
        *params(f"{LAYER}.intermediate.dense", "encoder.layers.{i}.ffn.up"),
        *params(f"{LAYER}.output.dense", "encoder.layers.{i}.ffn.down"),
        *params("vilt.layernorm", "encoder.final_norm"),
        *params("vilt.pooler.dense", "target.itm.pooler"),
    ),
    heads=(
        Head("ViltForMaskedLM", "AutoModel",
             rules=(*params("mlm_score.transform.dense", "target.mlm.dense"),
                    *params("mlm_score.transform.LayerNorm", "target.mlm.norm"),
                    Rule(("mlm_score.decoder.bias",), "target.mlm.decoder.bias")),
             tied={"mlm_score.decoder.weight": f"{TEXT}.word_embeddings.weight"},
             uer_only=("target.itm.classifier.",)),
        Head("ViltForImageAndTextRetrieval", "AutoModel", target="itm",
             rules=params("rank_output", "target.itm.classifier")),
    ),
    max_positions=lambda m: m.max_seq_length,
    input_names=("input_ids", "token_type_ids", "attention_mask"),
    tokenizer_class="BertTokenizerFast",
    image_processor=image_processor,
)
