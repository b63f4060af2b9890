"""The tiny encoder-decoders (T5, T5 v1.1, BART, PEGASUS) that the conversion and generation tests
build in transformers with random weights and odd sizes, and save as Hugging Face directories."""
from __future__ import annotations

import torch
import transformers
from convert_cases import hf_tokenizer

SEQ2SEQ = {"vocab_size": 99, "d_model": 36, "encoder_layers": 3, "decoder_layers": 2, "encoder_attention_heads": 4,
           "decoder_attention_heads": 2, "encoder_ffn_dim": 52, "decoder_ffn_dim": 44, "max_position_embeddings": 40}
T5 = {"vocab_size": 99, "d_model": 36, "d_kv": 9, "d_ff": 52, "num_layers": 3, "num_decoder_layers": 2, "num_heads": 4,
      "relative_attention_num_buckets": 8, "relative_attention_max_distance": 12}
CASES = {  # name -> (family, HF class, config)
    "t5": ("t5", "T5ForConditionalGeneration", lambda: transformers.T5Config(**T5)),
    "t5_v1_1": ("t5", "T5ForConditionalGeneration",
                lambda: transformers.T5Config(**T5, feed_forward_proj="gated-gelu", tie_word_embeddings=False)),
    "bart": ("bart", "BartForConditionalGeneration", lambda: transformers.BartConfig(**SEQ2SEQ)),
    "pegasus": ("pegasus", "PegasusForConditionalGeneration",
                lambda: transformers.PegasusConfig(**SEQ2SEQ, scale_embedding=True, activation_function="relu")),
}
PAD = {"t5": 0, "bart": 1, "pegasus": 0}


def tiny_hf(name: str, seed: int = 0):
    """The HF model of case ``name`` with every parameter and the logits bias randomized (T5 v1.1
    gets an LM head of its own, as the released checkpoints have)."""
    _, architecture, config = CASES[name]
    torch.manual_seed(seed)
    model = getattr(transformers, architecture)(config())
    if name == "t5_v1_1":
        model.lm_head.weight = torch.nn.Parameter(torch.randn(99, 36))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
        if hasattr(model, "final_logits_bias"):
            model.final_logits_bias.normal_()
    return model.eval()


def save_hf(name: str, directory):
    model = tiny_hf(name)
    model.save_pretrained(directory)
    hf_tokenizer(CASES[name][0]).save_pretrained(directory)
    return model
