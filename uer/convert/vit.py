"""ViT (Dosovitskiy et al. 2021) <-> ``transformers`` ``ViTForImageClassification`` / ``ViTModel``.

Tensor names are those ``transformers`` writes (``vit.encoder.layer.{i}.attention.attention.query``
...; it renames them to its new module layout when loading). ``ViTModel`` has a pooler (dense + tanh
on the [CLS] vector) and no classifier: it imports into the ViT preset with the cls target's
``pooler: true``, the classifier left at uer's seeded initialization and listed under
``convert.initialized``; exporting as ``ViTModel`` drops the classifier again. An export writes the
``ViTImageProcessor`` settings of uer's pixels (:func:`square_image_processor`), so
``AutoImageProcessor`` loads it.
"""
from __future__ import annotations

from uer.convert.bert import ENCODER_KEYS
from uer.convert.spec import ConfigKey, Family, Head, Rule, fused_qkv, params
from uer.data.images import STANDARD_MEAN, STANDARD_STD
from uer.errors import UerError

LAYER = "vit.encoder.layer.{i}"


def square(value, _config):
    """An image or patch size: an int, or a square [h, w]."""
    if isinstance(value, (list, tuple)):
        if len(value) != 2 or value[0] != value[1]:
            raise UerError(f"non-square size {list(value)} has no uer equivalent")
        value = value[0]
    return int(value)


def image_keys(hf: str = "", uer: str = "") -> tuple[ConfigKey, ...]:
    """Image size, patch size and channels of a ViT-style config; ``hf``/``uer``: key prefixes
    (CLIP's ``vision_config.`` and ``vision.``)."""
    return (ConfigKey(f"{hf}image_size", f"{uer}image_size", square),
            ConfigKey(f"{hf}patch_size", f"{uer}patch_size", square),
            ConfigKey(f"{hf}num_channels", f"{uer}channels"))


def pooler_check(config) -> str | None:
    """The problem with a ViT pooler uer cannot hold (its output width must be D), or None."""
    size = getattr(config, "pooler_output_size", None)
    if size not in (None, config.hidden_size):
        return f"pooler_output_size={size} differs from hidden_size={config.hidden_size}"
    return None


def square_image_processor(processor_type: str, model_cfg) -> dict:
    """The ``preprocessor_config.json`` of the transformers image processor ``processor_type``
    (``ViTImageProcessor``, ``BeitImageProcessor``) giving the pixels of
    :class:`uer.data.images.ImageCollator`: resize to the square ``model.image_size`` (bicubic), no
    crop, /255, mean = std = 0.5 per channel (``model.channels``)."""
    size, channels = model_cfg.image_size, model_cfg.channels
    return {"image_processor_type": processor_type, "do_resize": True,
            "size": {"height": size, "width": size}, "resample": 3, "do_center_crop": False, "do_rescale": True,
            "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": [STANDARD_MEAN] * channels,
            "image_std": [STANDARD_STD] * channels}


FAMILY = Family(
    model_type="vit",
    presets=("vit_base_16", "vit_tiny"),
    prefix="vit.",
    config=(
        *ENCODER_KEYS,
        ConfigKey("initializer_range", "init_std"),
        ConfigKey("layer_norm_eps", "norm_eps"),
        *image_keys(),
        ConfigKey("num_labels", "num_labels"),
    ),
    fixed={"qkv_bias": (True,), "pooler_act": ("tanh",)},
    check=pooler_check,
    body=(
        Rule(("vit.embeddings.cls_token",), "embedding.patch.cls"),
        Rule(("vit.embeddings.position_embeddings",), "embedding.patch.position"),
        *params("vit.embeddings.patch_embeddings.projection", "embedding.patch.proj"),
        *params(f"{LAYER}.layernorm_before", "encoder.layers.{i}.attention_norm"),
        *fused_qkv(f"{LAYER}.attention.attention.query", f"{LAYER}.attention.attention.key",
                   f"{LAYER}.attention.attention.value", "encoder.layers.{i}.attention.qkv"),
        *params(f"{LAYER}.attention.output.dense", "encoder.layers.{i}.attention.out"),
        *params(f"{LAYER}.layernorm_after", "encoder.layers.{i}.ffn_norm"),
        *params(f"{LAYER}.intermediate.dense", "encoder.layers.{i}.ffn.up"),
        *params(f"{LAYER}.output.dense", "encoder.layers.{i}.ffn.down"),
        *params("vit.layernorm", "encoder.final_norm"),
    ),
    heads=(
        Head("ViTForImageClassification", "AutoModelForImageClassification",
             rules=params("classifier", "target.cls.classifier"),
             unused=("vit.pooler.dense.weight", "vit.pooler.dense.bias")),
        Head("ViTModel", "AutoModel", overrides=("model.target.cls.pooler=true",),
             rules=params("vit.pooler.dense", "target.cls.pooler"), uer_only=("target.cls.classifier.",),
             base_model=True),
    ),
    image_processor=lambda model_cfg: square_image_processor("ViTImageProcessor", model_cfg),
)
