"""wav2vec 2.0 (Baevski et al. 2020) <-> ``transformers`` ``Wav2Vec2ForPreTraining`` /
``Wav2Vec2ForCTC`` / ``Wav2Vec2Model``, onto the ``wav2vec2_*`` and ``ctc_tiny`` presets.

Converted: the feature encoder with group norm after the first convolution only
(``feat_extract_norm="group"``, wav2vec2-base) or layer norm after every one (``"layer"``: uer's
``conv_norm``), convolutions without bias, post-LN layers (``do_stable_layer_norm=false``: the
encoder's ``layer_norm`` before the layers is uer's embedding norm), no adapter. The pre-LN layout of
large-lv60 / XLS-R (``do_stable_layer_norm=true``) is refused. The feature encoder's convolutions
take the layer placeholder ``{c}``. Checkpoints that store the position convolution's weight norm
as ``weight_g``/``weight_v`` (before transformers 4.x's parametrizations) need a
``from_pretrained`` + ``save_pretrained`` round through transformers first.

Settings that only shape Hugging Face's own training (``mask_time_*``, ``mask_feature_*``,
``num_negatives``, ``layerdrop``, ``apply_spec_augment``) are carried through config.json untouched:
uer's collator draws masks and distractors (``data=wav2vec2``), and uer has no LayerDrop. The
Gumbel temperature, which Hugging Face sets from its training script, is written as
``uer_gumbel_temperature`` when it is not the default 2.
"""
from __future__ import annotations

from uer.convert.bert import activation
from uer.convert.spec import ConfigKey, Family, Head, Rule, fused_qkv, params
from uer.errors import UerError

LAYER = "wav2vec2.encoder.layers.{i}"
CONV = "wav2vec2.feature_extractor.conv_layers"
POS = "wav2vec2.encoder.pos_conv_embed.conv"
DEFAULT_GUMBEL = 2.0


def as_list(value, _config):
    """A per-layer setting (tuple in the HF config) as a list of ints."""
    return [int(v) for v in value]


def gumbel_to_uer(value, _config):
    return DEFAULT_GUMBEL if value is None else float(value)


def gumbel_to_hf(value, _config):
    return None if value == DEFAULT_GUMBEL else value


def conv_norm(value, _config):
    """``feat_extract_norm``: group or layer, the same names on both sides."""
    if value not in ("group", "layer"):
        raise UerError(f"feat_extract_norm={value!r} has no uer equivalent (supported: 'group', 'layer')")
    return value


def reduction(value, _config):
    """``ctc_loss_reduction``: uer's CtcTarget has ``mean`` and ``sum``."""
    if value not in ("mean", "sum"):
        raise UerError(f"ctc_loss_reduction={value!r} has no uer equivalent (supported: 'mean', 'sum')")
    return value


def layout_check(config) -> str | None:
    """The problem with a config uer cannot convert (see the module docstring), or None."""
    if len(config.conv_dim) != len(config.conv_kernel) or len(config.conv_dim) != len(config.conv_stride):
        return "conv_dim, conv_kernel and conv_stride of different lengths"
    if not (config.mask_time_prob > 0 or config.mask_feature_prob > 0):
        return "mask_time_prob=0 and mask_feature_prob=0 (no masked_spec_embed)"
    return None


def feature_extractor(_model_cfg) -> dict:
    """``preprocessor_config.json`` of an export: transformers' ``Wav2Vec2FeatureExtractor`` with
    uer's waveform collator's settings (16 kHz, zero padding, per-utterance normalization, an
    attention mask)."""
    return {"feature_extractor_type": "Wav2Vec2FeatureExtractor", "feature_size": 1, "sampling_rate": 16000,
            "padding_value": 0.0, "padding_side": "right", "do_normalize": True, "return_attention_mask": True}


FAMILY = Family(
    model_type="wav2vec2",
    presets=("wav2vec2_base", "wav2vec2_tiny", "ctc_tiny"),
    prefix="wav2vec2.",
    config=(
        ConfigKey("hidden_size", "dim"),
        ConfigKey("num_hidden_layers", "num_layers"),
        ConfigKey("num_attention_heads", "num_heads"),
        ConfigKey("intermediate_size", "ffn_dim"),
        ConfigKey("hidden_act", "encoder.ffn.activation", activation),
        ConfigKey("hidden_dropout", "dropout"),
        ConfigKey("attention_dropout", "encoder.attention.dropout"),
        ConfigKey("activation_dropout", "encoder.ffn.activation_dropout"),
        ConfigKey("feat_proj_dropout", "projection_dropout"),
        ConfigKey("feat_quantizer_dropout", "quantizer_dropout"),
        ConfigKey("final_dropout", "final_dropout"),
        ConfigKey("initializer_range", "init_std"),
        ConfigKey("layer_norm_eps", "norm_eps"),
        ConfigKey("conv_dim", "conv_dim", as_list, as_list),
        ConfigKey("conv_kernel", "conv_kernel", as_list, as_list),
        ConfigKey("conv_stride", "conv_stride", as_list, as_list),
        ConfigKey("feat_extract_norm", "conv_norm", conv_norm),
        ConfigKey("feat_extract_activation", "conv_activation", activation),
        ConfigKey("num_conv_pos_embeddings", "pos_conv_kernel"),
        ConfigKey("num_conv_pos_embedding_groups", "pos_conv_groups"),
        ConfigKey("num_codevector_groups", "num_codevector_groups"),
        ConfigKey("num_codevectors_per_group", "num_codevectors_per_group"),
        ConfigKey("codevector_dim", "codevector_dim"),
        ConfigKey("proj_codevector_dim", "proj_codevector_dim"),
        ConfigKey("contrastive_logits_temperature", "contrastive_temperature"),
        ConfigKey("diversity_loss_weight", "diversity_weight"),
        ConfigKey("uer_gumbel_temperature", "gumbel_temperature", gumbel_to_uer, gumbel_to_hf),
        ConfigKey("vocab_size", "vocab_size"),
        ConfigKey("pad_token_id", "blank_id"),
        ConfigKey("ctc_loss_reduction", "ctc_reduction", reduction),
        ConfigKey("ctc_zero_infinity", "ctc_zero_infinity"),
    ),
    fixed={"do_stable_layer_norm": (False,), "conv_bias": (False,),
           "add_adapter": (False,), "adapter_attn_dim": (None,), "use_weighted_layer_sum": (False,)},
    check=layout_check,
    body=(
        Rule((f"{CONV}.{{c}}.conv.weight",), "embedding.feature.conv_layers.{c}.conv.weight"),
        *(Rule((f"{CONV}.{{c}}.layer_norm.{p}",), f"embedding.feature.conv_layers.{{c}}.norm.{p}", optional=True)
          for p in ("weight", "bias")),  # group: the first convolution's only; layer: every one's
        *params("wav2vec2.feature_projection.layer_norm", "embedding.projection.norm"),
        *params("wav2vec2.feature_projection.projection", "embedding.projection.linear"),
        Rule(("wav2vec2.masked_spec_embed",), "embedding.projection.masked_spec_embed"),
        *(Rule((f"{POS}.parametrizations.weight.original{n}",),
               f"embedding.position.conv.parametrizations.weight.original{n}") for n in (0, 1)),
        Rule((f"{POS}.bias",), "embedding.position.conv.bias"),
        *params("wav2vec2.encoder.layer_norm", "embedding.norm"),
        *fused_qkv(f"{LAYER}.attention.q_proj", f"{LAYER}.attention.k_proj", f"{LAYER}.attention.v_proj",
                   "encoder.layers.{i}.attention.qkv"),
        *params(f"{LAYER}.attention.out_proj", "encoder.layers.{i}.attention.out"),
        *params(f"{LAYER}.layer_norm", "encoder.layers.{i}.attention_norm"),
        *params(f"{LAYER}.feed_forward.intermediate_dense", "encoder.layers.{i}.ffn.up"),
        *params(f"{LAYER}.feed_forward.output_dense", "encoder.layers.{i}.ffn.down"),
        *params(f"{LAYER}.final_layer_norm", "encoder.layers.{i}.ffn_norm"),
    ),
    heads=(
        Head("Wav2Vec2ForPreTraining", "AutoModelForPreTraining", target="wav2vec2",
             rules=(Rule(("quantizer.codevectors",), "target.wav2vec2.quantizer.codevectors"),
                    *params("quantizer.weight_proj", "target.wav2vec2.quantizer.weight_proj"),
                    *params("project_hid", "target.wav2vec2.project_hid"),
                    *params("project_q", "target.wav2vec2.project_q"))),
        Head("Wav2Vec2ForCTC", "AutoModelForCTC", target="ctc", rules=params("lm_head", "target.ctc.lm_head")),
        Head("Wav2Vec2Model", "AutoModel", target="wav2vec2", uer_only=("target.wav2vec2.",), base_model=True),
    ),
    input_names=("input_values", "attention_mask"),
    image_processor=feature_extractor,
)
