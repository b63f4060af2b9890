"""Reading a config file nobody vouches for (a downloaded checkpoint's ``config.yaml``, a Hugging
Face ``config.json``) as plain data, within limits, before anything else looks at it.

- Size: at most :data:`MAX_BYTES` (real configs are a few KiB; a converted classifier with tens of
  thousands of label names stays well under it), checked on the file before it is read.
- YAML nodes: the event stream is scanned with libyaml (no objects built) and the file is refused
  once it would expand to more than :data:`MAX_NODES` nodes or nest deeper than :data:`MAX_DEPTH`;
  aliases count as the nodes they stand for, so a "billion laughs" alias bomb (a few hundred bytes
  that expand exponentially) is refused after reading a few hundred events instead of taking
  minutes and gigabytes in OmegaConf. The limit leaves room for a fine-tuned classifier of some
  50,000 classes (its label names are recorded four times); a file at the limit takes OmegaConf
  seconds and a few hundred MB, not more.
- Interpolations: checkpoints are saved resolved (:func:`uer.models.pretrained.save_pretrained`), so
  a ``${...}`` in one (``${oc.env:HOME}``, ``${now:...}``) was put there by hand; it is refused
  rather than resolved later by whatever reads the key (and a config.json value that OmegaConf
  would take for one is refused too: it is carried into the checkpoint config of a conversion).

Each refusal is one :class:`UerError` line naming the file and the problem.
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import yaml
from omegaconf import DictConfig, OmegaConf

from uer.errors import UerError

MAX_BYTES = 8 * 2**20
"""Largest config file read, in bytes (8 MiB)."""
MAX_NODES = 250_000
"""Most YAML/JSON nodes (scalars and collections, aliases expanded) a config may hold."""
MAX_DEPTH = 64
"""Deepest nesting of collections a config may have."""
INTERPOLATION = "${"
_PARSER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when installed: ~20x faster


def read_text(path: Path) -> str:
    """The text of the config file ``path``, if it is not larger than :data:`MAX_BYTES`.

    Raises:
        UerError: missing, not a regular file, too large, unreadable or not UTF-8.
    """
    path = Path(path)
    if not path.is_file():
        raise UerError(f"{path}: no such file")
    try:
        with path.open("rb") as f:
            data = f.read(MAX_BYTES + 1)
    except OSError as e:
        raise UerError(f"{path}: cannot read ({e.strerror or e})") from None
    if len(data) > MAX_BYTES:
        raise UerError(f"{path}: larger than {MAX_BYTES // 2**20} MiB, too large for a config file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UerError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def load_yaml(path: Path) -> DictConfig:
    """The YAML mapping in ``path`` as an unresolved config that holds no interpolation, read
    within the limits of this module.

    Raises:
        UerError: too large, too many nodes (an alias bomb), too deep, not YAML, not a mapping, or a
            value that is an interpolation (the message names its key).
    """
    text = read_text(path)
    try:
        _check_events(text, path)
        cfg = OmegaConf.load(io.StringIO(text))
    except UerError:
        raise
    except Exception as e:  # noqa: BLE001 - YAML and OmegaConf errors share no base
        raise UerError(f"{path}: unreadable config ({str(e).strip().splitlines()[0]})") from None
    if not isinstance(cfg, DictConfig):
        raise UerError(f"{path}: not a mapping of keys to values")
    _check_plain(OmegaConf.to_container(cfg, resolve=False), path)
    return cfg


def load_json(path: Path) -> dict:
    """The JSON object in ``path``, read within the limits of this module, with no string that
    OmegaConf would take for an interpolation.

    Raises:
        UerError: missing, too large, too many nodes or too deep, not JSON, not an object, or an
            interpolation-like value (the message names its key).
    """
    text = read_text(path)
    try:
        raw = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise UerError(f"{path}: not a readable JSON file ({str(e).splitlines()[0] or type(e).__name__})") from None
    if not isinstance(raw, dict):
        raise UerError(f"{path}: not a JSON object")
    _check_plain(raw, path)
    return raw


def _check_events(text: str, path: Path) -> None:
    """Raise :class:`UerError` once the YAML event stream of ``text`` expands (aliases replaced by
    what they name) past :data:`MAX_NODES` nodes or nests past :data:`MAX_DEPTH`."""
    sizes: dict[str, int] = {}  # anchor -> the nodes it stands for
    stack: list[list] = []  # open collections: [anchor, nodes so far, itself included]
    total = 0
    for event in yaml.parse(text, Loader=_PARSER):
        if isinstance(event, yaml.CollectionEndEvent):
            anchor, nodes = stack.pop()
            if anchor is not None:
                sizes[anchor] = nodes
            if stack:
                stack[-1][1] += nodes
            continue
        if isinstance(event, yaml.CollectionStartEvent):
            stack.append([event.anchor, 1])
            if len(stack) > MAX_DEPTH:
                raise UerError(f"{path}: nested deeper than {MAX_DEPTH} levels, refused as a config file")
            nodes = 1
        elif isinstance(event, (yaml.ScalarEvent, yaml.AliasEvent)):
            nodes = 1 if isinstance(event, yaml.ScalarEvent) else sizes.get(event.anchor, 1)
            if isinstance(event, yaml.ScalarEvent) and event.anchor is not None:
                sizes[event.anchor] = 1
            if stack:
                stack[-1][1] += nodes
        else:
            continue
        total += nodes
        if total > MAX_NODES:
            raise UerError(f"{path}: expands to more than {MAX_NODES} YAML nodes (aliases included), "
                           "refused as a config file")


def _check_plain(value, path: Path, key: str = "", depth: int = 0, budget: list[int] | None = None) -> None:
    """Raise :class:`UerError` if the plain data ``value`` holds more than :data:`MAX_NODES` nodes,
    nests deeper than :data:`MAX_DEPTH` or has a string with an interpolation (named by its dotted
    ``key``)."""
    budget = [MAX_NODES] if budget is None else budget
    budget[0] -= 1
    if budget[0] < 0:
        raise UerError(f"{path}: more than {MAX_NODES} values, refused as a config file")
    if depth > MAX_DEPTH:
        raise UerError(f"{path}: nested deeper than {MAX_DEPTH} levels, refused as a config file")
    if isinstance(value, str) and INTERPOLATION in value:
        raise UerError(f"{path}: {key or 'the value'} is an interpolation ({value[:60]!r}); a checkpoint's config "
                       "is saved resolved, so this one was edited: refusing to resolve it")
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for name, item in items:
        inner = f"{key}[{name}]" if isinstance(name, int) else f"{key}.{name}" if key else str(name)
        _check_plain(item, path, inner, depth + 1, budget)
