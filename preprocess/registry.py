"""The processor a ``data`` config names by ``_target_`` (``data.processor``), built with its
options: the ``data.*`` keys named like its dataclass fields (`uer.data.collators`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from omegaconf import DictConfig

from uer.data.collators import check_keys, parameters, target_class
from uer.errors import UerError
from uer.models.build import DEFAULT_ALLOWED
from uer.preprocess.processor import Processor


def options_from_config(cfg: Mapping | DictConfig, allowed: Iterable[str] = DEFAULT_ALLOWED) -> Processor:
    """Build the processor ``cfg.processor._target_`` names, with its options from the ``data``
    config section ``cfg``.

    Only the keys that are fields of the processor are read (the others may interpolate keys that
    only exist at training time, e.g. ``${model.image_size}``).

    Raises:
        UerError: a ``_target_`` outside ``allowed`` or not a `Processor` subclass, a key that neither
            the processor, the collator (``cfg.collator``) nor the loader reads (the message lists the
            valid keys), or an invalid value.
    """
    processor = target_class(cfg, "processor", allowed)
    if not issubclass(processor, Processor):
        raise UerError(f"data.processor._target_={cfg['processor']['_target_']}: not a subclass of "
                       "uer.preprocess.processor.Processor")
    check_keys(cfg, processor, target_class(cfg, "collator", allowed))
    fields = parameters(processor)
    return processor(**{key: cfg[key] for key in cfg.keys() if key in fields})
