"""Lossless conversion between uer checkpoints and Hugging Face Transformers models (DESIGN §6):
one engine (:mod:`uer.convert.engine`, :mod:`uer.convert.configs`) and one declarative spec per
family (``bert``, ``roberta``, ``albert``, ``gpt2``, ``vit``)."""
from uer.convert.api import as_uer_checkpoint, convert, hf_to_uer, uer_to_hf
from uer.convert.families import FAMILIES, supported

__all__ = ["FAMILIES", "as_uer_checkpoint", "convert", "hf_to_uer", "supported", "uer_to_hf"]
