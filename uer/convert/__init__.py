"""Lossless conversion between uer checkpoints and Hugging Face Transformers models (DESIGN §6):
one engine (:mod:`uer.convert.engine`, :mod:`uer.convert.configs`) and one declarative spec per
family (``bert``, ``roberta``, ``albert``, ``gpt2``, ``vit`` ...); and :func:`load_pretrained`,
the one loader of either kind of directory."""
from uer.convert.api import convert, hf_to_uer, uer_to_hf
from uer.convert.families import FAMILIES, supported
from uer.convert.load import Pretrained, load_pretrained
from uer.convert.reader import read_hf

__all__ = ["FAMILIES", "Pretrained", "convert", "hf_to_uer", "load_pretrained", "read_hf", "supported", "uer_to_hf"]
