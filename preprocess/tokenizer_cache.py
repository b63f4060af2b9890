"""Tokenizers a processor derives from the configured one (sentinels added, a target side attached),
stored once in the cache so that every stage loads the same one by path.

``$UER_CACHE/tokenizers/<sha256 of the recipe>/`` holds a `Tokenizer.save` directory. The recipe is
a JSON-able dict naming the inputs by content (tokenizer fingerprints, corpus digests) and the
derivation's arguments, so equal inputs give the same directory and a changed input a new one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from uer.preprocess.build import cache_root


def prepared_tokenizer(recipe: dict, build: Callable[[], object]) -> str:
    """The directory of the tokenizer ``build()`` returns for ``recipe``; ``build`` runs only when
    the cache does not hold it yet. The directory is written to a temporary sibling and renamed, so
    a crash never leaves a partial one (a concurrent build of the same recipe is fine)."""
    key = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()
    target = cache_root() / "tokenizers" / key
    if (target / "tokenizer.json").is_file():
        return str(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{key}."))
    try:
        build().save(staging)
        staging.chmod(0o755)
        try:
            os.replace(staging, target)
        except OSError:
            if not (target / "tokenizer.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return str(target)
