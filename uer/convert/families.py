"""The registry of family specs, keyed by Hugging Face ``model_type``."""
from __future__ import annotations

from uer.convert import (
    albert,
    bart,
    beit,
    bert,
    clip,
    gpt2,
    llama,
    marian,
    pegasus,
    roberta,
    s2t,
    t5,
    vilt,
    vit,
    wav2vec2,
)
from uer.convert.spec import Family
from uer.errors import UerError

FAMILIES: dict[str, Family] = {f.model_type: f for f in (bert.FAMILY, roberta.FAMILY, albert.FAMILY, gpt2.FAMILY,
                                                         vit.FAMILY, t5.FAMILY, bart.FAMILY, pegasus.FAMILY,
                                                         vilt.FAMILY, clip.FAMILY, llama.LLAMA, llama.MISTRAL,
                                                         llama.QWEN2, wav2vec2.FAMILY, s2t.FAMILY, beit.FAMILY,
                                                         marian.FAMILY)}


def family_of(model_type: str, where: str) -> Family:
    """The spec for ``model_type``; UerError naming ``where`` and the supported types otherwise."""
    try:
        return FAMILIES[model_type]
    except KeyError:
        raise UerError(f"{where}: model_type {model_type!r} is not supported; supported: "
                       f"{', '.join(FAMILIES)}") from None


def supported() -> str:
    """One line per family: ``bert: BertForPreTraining, BertForMaskedLM, BertModel``; each architecture
    once (T5's four heads are all ``T5ForConditionalGeneration``)."""
    return "\n".join(f"  {t}: {', '.join(dict.fromkeys(h.architecture for h in f.heads))}"
                     for t, f in FAMILIES.items())
