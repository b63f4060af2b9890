"""TencentPretrain / UER-py checkpoints -> uer: their ``.bin`` state dict and JSON config, for the
BERT and GPT-2 layouts.

Their checkpoints name the parts of their own modules (``embedding.word.embedding.weight``,
``encoder.transformer.{i}.self_attn.linear_layers.{0,1,2}`` for query/key/value,
``layer_norm_1.gamma`` ...; UER-py before 2021 wrote ``embedding.word_embedding.weight`` and
``position_embedding``/``segment_embedding``, read here too). The names are renamed to the
Hugging Face BERT / GPT-2 layout, as their own ``scripts/convert_{bert,gpt2}_from_*_to_huggingface.py``
do, and go through the Hugging Face import (:func:`uer.convert.reader.hf_model`), so the sizes,
tied weights and unused tensors are checked as for any import. What carries over:

- BERT (``--embedding word_pos_seg --encoder transformer --mask fully_visible --target mlm [sp]``):
  post-LN layers; their segment table has a row for padding (segment 0; A = 1, B = 2), which
  BERT's ``token_type_embeddings`` drops; ``target.sp`` (pooler, NSP classifier) makes it a
  ``BertForPreTraining``, else ``BertForMaskedLM``.
- GPT-2 (``--embedding word_pos --encoder transformer --mask causal --layernorm_positioning pre
  --target lm``): pre-LN layers with the final ``encoder.layer_norm``; q/k/v fused, as GPT-2's ``c_attn``.
- Sizes come from the tensors; ``heads_num``, ``hidden_act`` (``gelu`` = erf GELU, ``gelu_fast`` =
  the tanh approximation, ``relu``, ``silu``) and ``dropout`` from the config.
- Their LayerNorm divides by the unbiased standard deviation plus 1e-6; uer's (PyTorch's, Hugging
  Face's) by sqrt(biased variance + eps), eps = 1e-6 here: outputs differ by a relative ~1/(2D),
  as they do after their own Hugging Face conversion.
- Their MLM/LM output layer must equal the word table (trained with ``--tie_weights``; the
  import says so otherwise).
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from uer.convert.configs import hf_config_from
from uer.convert.files import read_hf_tokenizer, staged
from uer.convert.reader import hf_model
from uer.data.tokenizer import Tokenizer
from uer.errors import UerError
from uer.models.pretrained import save_pretrained
from uer.models.untrusted import load_json

log = logging.getLogger("uer")

RENAMED = {"embedding.word_embedding.weight": "embedding.word.embedding.weight",
           "embedding.position_embedding.weight": "embedding.pos.embedding.weight",
           "embedding.segment_embedding.weight": "embedding.seg.embedding.weight"}
"""UER-py's older names -> TencentPretrain's."""
ACTIVATIONS = {"gelu": "gelu", "gelu_fast": "gelu_new", "relu": "relu", "silu": "silu"}
"""Their ``hidden_act`` -> transformers'."""
LAYER = "encoder.transformer.{i}"


def _linear(theirs: str, hf: str) -> dict[str, str]:
    return {f"{theirs}.weight": f"{hf}.weight", f"{theirs}.bias": f"{hf}.bias"}


def _norm(theirs: str, hf: str) -> dict[str, str]:
    return {f"{theirs}.gamma": f"{hf}.weight", f"{theirs}.beta": f"{hf}.bias"}


BERT_LAYER = {**_linear(f"{LAYER}.self_attn.linear_layers.0", "bert.encoder.layer.{i}.attention.self.query"),
              **_linear(f"{LAYER}.self_attn.linear_layers.1", "bert.encoder.layer.{i}.attention.self.key"),
              **_linear(f"{LAYER}.self_attn.linear_layers.2", "bert.encoder.layer.{i}.attention.self.value"),
              **_linear(f"{LAYER}.self_attn.final_linear", "bert.encoder.layer.{i}.attention.output.dense"),
              **_norm(f"{LAYER}.layer_norm_1", "bert.encoder.layer.{i}.attention.output.LayerNorm"),
              **_linear(f"{LAYER}.feed_forward.linear_1", "bert.encoder.layer.{i}.intermediate.dense"),
              **_linear(f"{LAYER}.feed_forward.linear_2", "bert.encoder.layer.{i}.output.dense"),
              **_norm(f"{LAYER}.layer_norm_2", "bert.encoder.layer.{i}.output.LayerNorm")}
BERT = {"embedding.word.embedding.weight": "bert.embeddings.word_embeddings.weight",
        "embedding.pos.embedding.weight": "bert.embeddings.position_embeddings.weight",
        **_norm("embedding.layer_norm", "bert.embeddings.LayerNorm"),
        **_linear("target.sp.linear_1", "bert.pooler.dense"),
        **_linear("target.sp.linear_2", "cls.seq_relationship"),
        **_linear("target.mlm.linear_1", "cls.predictions.transform.dense"),
        **_norm("target.mlm.layer_norm", "cls.predictions.transform.LayerNorm"),
        "target.mlm.linear_2.weight": "cls.predictions.decoder.weight",
        "target.mlm.linear_2.bias": "cls.predictions.bias"}
"""TencentPretrain BERT names -> Hugging Face ``BertForPreTraining`` names (the segment table apart)."""
GPT2_LAYER = {**_norm(f"{LAYER}.layer_norm_1", "transformer.h.{i}.ln_1"),
              **_norm(f"{LAYER}.layer_norm_2", "transformer.h.{i}.ln_2")}
GPT2_CONV1D = {f"{LAYER}.self_attn.final_linear": "transformer.h.{i}.attn.c_proj",
               f"{LAYER}.feed_forward.linear_1": "transformer.h.{i}.mlp.c_fc",
               f"{LAYER}.feed_forward.linear_2": "transformer.h.{i}.mlp.c_proj"}
"""Linear layers that GPT-2 stores transposed (``Conv1D``)."""
GPT2 = {"embedding.word.embedding.weight": "transformer.wte.weight",
        "embedding.pos.embedding.weight": "transformer.wpe.weight",
        **_norm("encoder.layer_norm", "transformer.ln_f"),
        "target.lm.output_layer.weight": "lm_head.weight"}


def read_state(path: Path) -> dict[str, torch.Tensor]:
    """Their state dict, loaded with ``weights_only`` (tensors and containers only), older names renamed.

    Raises:
        UerError: not a readable PyTorch file, or not a dict of tensors.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - pickle, zip and weights_only errors share no base
        raise UerError(f"{path}: not a readable PyTorch weights file ({' '.join(str(e).split())[:200]})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UerError(f"{path}: not a state dict (name -> tensor)")
    return {RENAMED.get(k, k): v for k, v in state.items()}


def _layers(state: dict) -> int:
    return len({k.split(".")[2] for k in state if k.startswith("encoder.transformer.")})


def _take(state: dict, theirs: str, where: Path) -> torch.Tensor:
    if theirs not in state:
        raise UerError(f"{where}: no tensor {theirs} (not a TencentPretrain/UER-py BERT or GPT-2 checkpoint?)")
    return state.pop(theirs)


def _renamed(state: dict, names: dict[str, str], layered: dict[str, str], layers: int, where: Path) -> dict:
    """Hugging Face tensors of the ``names`` present in ``state`` and of ``layered`` for each layer."""
    out = {hf: state.pop(theirs) for theirs, hf in names.items() if theirs in state}
    for i in range(layers):
        out.update({hf.format(i=i): _take(state, theirs.format(i=i), where) for theirs, hf in layered.items()})
    return out


def to_hf(state: dict, options: dict, where: Path) -> tuple[dict, dict]:
    """``(Hugging Face tensors, config.json dict)`` of their checkpoint ``state`` with their config
    ``options``: GPT-2 when it has an LM target or a final norm, else BERT.

    Raises:
        UerError: a missing tensor, an unsupported activation, an output layer that is not the
            word table, or tensors no rule maps.
    """
    state, layers = dict(state), _layers(state)
    act = options.get("hidden_act", "gelu")
    if act not in ACTIVATIONS:
        raise UerError(f"{where}: hidden_act {act!r} has no uer equivalent; supported: {', '.join(ACTIVATIONS)}")
    if "heads_num" not in options:
        raise UerError(f"{where}: no heads_num (their config's number of attention heads)")
    word, dropout = _take(dict(state), "embedding.word.embedding.weight", where), options.get("dropout", 0.1)
    for output in ("target.mlm.linear_2.weight", "target.lm.output_layer.weight"):
        if output in state and not torch.equal(state[output], word):
            raise UerError(f"{where}: {output} differs from embedding.word.embedding.weight (trained without "
                           "--tie_weights); uer ties the output layer to the word table")
    common = {"vocab_size": word.shape[0], "initializer_range": 0.02}
    if "target.lm.output_layer.weight" in state or "encoder.layer_norm.gamma" in state:
        tensors = _renamed(state, GPT2, GPT2_LAYER, layers, where)
        for i in range(layers):
            qkv = [(_take(state, f"{LAYER}.self_attn.linear_layers.{j}.weight".format(i=i), where),
                    _take(state, f"{LAYER}.self_attn.linear_layers.{j}.bias".format(i=i), where)) for j in range(3)]
            tensors[f"transformer.h.{i}.attn.c_attn.weight"] = torch.cat([w for w, _ in qkv]).t().contiguous()
            tensors[f"transformer.h.{i}.attn.c_attn.bias"] = torch.cat([b for _, b in qkv])
            for theirs, hf in GPT2_CONV1D.items():
                tensors[f"{hf.format(i=i)}.weight"] = _take(state, f"{theirs.format(i=i)}.weight", where).t().contiguous()
                tensors[f"{hf.format(i=i)}.bias"] = _take(state, f"{theirs.format(i=i)}.bias", where)
        config = {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], **common,
                  "n_positions": tensors["transformer.wpe.weight"].shape[0], "n_embd": word.shape[1],
                  "n_layer": layers, "n_head": options["heads_num"],
                  "n_inner": tensors["transformer.h.0.mlp.c_fc.weight"].shape[1] if layers else None,
                  "activation_function": ACTIVATIONS[act], "resid_pdrop": dropout, "embd_pdrop": dropout,
                  "attn_pdrop": dropout, "layer_norm_epsilon": 1e-6, "bos_token_id": None, "eos_token_id": None}
    else:
        segments = _take(state, "embedding.seg.embedding.weight", where)[1:]  # row 0: their padding segment
        tensors = {"bert.embeddings.token_type_embeddings.weight": segments.contiguous(),
                   **_renamed(state, BERT, BERT_LAYER, layers, where)}
        nsp = "cls.seq_relationship.weight" in tensors
        config = {"model_type": "bert", "architectures": ["BertForPreTraining" if nsp else "BertForMaskedLM"],
                  **common, "hidden_size": word.shape[1], "num_hidden_layers": layers,
                  "num_attention_heads": options["heads_num"],
                  "intermediate_size": tensors["bert.encoder.layer.0.intermediate.dense.weight"].shape[0] if layers
                  else options.get("feedforward_size", 4 * word.shape[1]),
                  "hidden_act": ACTIVATIONS[act], "hidden_dropout_prob": dropout,
                  "attention_probs_dropout_prob": dropout,
                  "max_position_embeddings": tensors["bert.embeddings.position_embeddings.weight"].shape[0],
                  "type_vocab_size": segments.shape[0], "layer_norm_eps": 1e-6, "pad_token_id": 0}
    if state:
        raise UerError(f"{where}: tensors with no place in {config['architectures'][0]}: {', '.join(sorted(state)[:5])}")
    return tensors, config


def import_tencentpretrain(weights: str | Path, config: str | Path, dst: str | Path,
                           vocab: str | Path | None = None) -> Path:
    """Write the uer checkpoint of the TencentPretrain/UER-py checkpoint ``weights`` (their ``.bin``)
    with their JSON ``config`` and, if given, their ``vocab`` file (``vocab.txt``, or any file
    :meth:`Tokenizer.load` reads) to ``dst``, which must not exist.

    Raises:
        UerError: unreadable or unsupported inputs (see :func:`to_hf`, :func:`uer.convert.reader.hf_model`),
            untied output weights, or an existing ``dst``; ``dst`` is then not created.
    """
    weights, config_path = Path(weights), Path(config)
    options = load_json(config_path)
    tensors, raw = to_hf(read_state(weights), options, weights)
    tokenizer = None
    if vocab is not None:
        tokenizer = read_hf_tokenizer(Path(vocab)) if Path(vocab).is_dir() else Tokenizer.load(Path(vocab))
    model, checkpoint_cfg, _ = hf_model(hf_config_from(raw, str(config_path)), raw, tensors, tokenizer,
                                        raw["architectures"][0], others=False, where=str(weights),
                                        source=str(weights.resolve()))
    with staged(Path(dst)) as out:
        save_pretrained(out, model, checkpoint_cfg, tokenizer)
    log.info("TencentPretrain checkpoint %s -> uer checkpoint %s (%s)", weights, dst, raw["architectures"][0])
    return Path(dst)
