"""Read model configs written before the Transformer layer was composed from injected parts.

Checkpoints saved until then hold a flat Transformer stack config (``encoder.num_heads``,
``encoder.norm``, ``encoder.activation`` ... next to ``encoder.num_layers``); today the stack names
factories for its parts (``encoder.attention``, ``encoder.ffn``, ``encoder.norm``, each with a
``_target_``). :func:`upgrade_model_config` rewrites the old form into the new one with the same
parameter names, so old checkpoints load and compute exactly what they did."""
from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

STACKS = {"encoder": "uer.encoders.TransformerEncoder", "decoder": "uer.decoders.TransformerDecoder"}
NORM_CLASSES = {"layernorm": "uer.layers.LayerNorm", "rmsnorm": "uer.layers.RMSNorm"}
PART_KEYS = ("dim", "num_heads", "ffn_dim", "attention_dropout", "activation_dropout", "activation", "gated_ffn",
             "norm_eps", "bias", "head_dim", "attention_scale")
"""Keys of the flat form that moved into the parts (``norm`` and ``dropout`` are handled apart)."""


def _upgrade_stack(old: dict) -> dict:
    """One flat stack config (resolved, plain dict) -> the composed form."""
    stack = {k: v for k, v in old.items() if k not in PART_KEYS and k != "norm"}
    stack["attention"] = {"_target_": "uer.layers.MultiHeadAttention", "_partial_": True, "dim": old["dim"],
                          "num_heads": old["num_heads"], "num_kv_heads": None, "head_dim": old.get("head_dim"),
                          "dropout": old.get("attention_dropout", 0.1), "bias": old.get("bias", True),
                          "scale": old.get("attention_scale"), "rotary": None}
    stack["ffn"] = {"_target_": "uer.layers.FeedForward", "_partial_": True, "dim": old["dim"],
                    "ffn_dim": old["ffn_dim"], "activation": old.get("activation", "gelu"),
                    "gated": old.get("gated_ffn", False), "dropout": old.get("dropout", 0.1),
                    "activation_dropout": old.get("activation_dropout", 0.0), "bias": old.get("bias", True)}
    stack["norm"] = {"_target_": NORM_CLASSES[old.get("norm", "layernorm")], "_partial_": True, "dim": old["dim"],
                     "eps": old.get("norm_eps", 1e-12)}
    return stack


def upgrade_model_config(model_cfg: DictConfig) -> DictConfig:
    """``model_cfg`` (a ``model:`` config) with any flat Transformer encoder/decoder rewritten into
    the composed form; the same object, untouched, when there is none (the new form is a no-op).

    A stack is flat when it is uer's Transformer stack and has ``num_heads`` of its own. Its values
    are resolved first (checkpoint configs are resolved already).

    Raises:
        KeyError: a flat stack lacks ``dim``, ``num_heads`` or ``ffn_dim`` (not a config uer wrote).
    """
    flat = [part for part, target in STACKS.items()
            if isinstance(model_cfg.get(part), DictConfig) and model_cfg[part].get("_target_") == target
            and "num_heads" in model_cfg[part]]
    if not flat:
        return model_cfg
    upgraded = model_cfg.copy()
    for part in flat:
        upgraded[part] = _upgrade_stack(OmegaConf.to_container(model_cfg[part], resolve=True))
    return upgraded


def upgrade_config(cfg: DictConfig) -> DictConfig:
    """A whole run config (``config.yaml`` of a checkpoint) with its ``model`` upgraded by
    :func:`upgrade_model_config`; unchanged without a ``model``."""
    if isinstance(cfg.get("model"), DictConfig):
        cfg.model = upgrade_model_config(cfg.model)
    return cfg
