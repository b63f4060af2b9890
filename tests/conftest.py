"""Shared fixtures: offline mode, a private dataset cache, the shared data folder, and a small
slice of the embedded corpus so tests preprocess in well under a second."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
KJV = Path(__file__).resolve().parents[1] / "uer" / "data" / "default" / "kjv.txt"


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Datasets built by tests go to a temporary cache, never the user's ~/.cache/uer."""
    os.environ["UER_CACHE"] = str(tmp_path_factory.mktemp("uer-cache"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder {SHARED_DATA} is absent")
    return SHARED_DATA


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory) -> Path:
    """The first ~40 chapters of the embedded King James Bible (document format)."""
    lines = KJV.read_text(encoding="utf-8").splitlines()[:1500]
    path = tmp_path_factory.mktemp("corpus") / "kjv_small.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def wordpiece():
    """The shipped uncased WordPiece tokenizer."""
    from uer.data.tokenizer import Tokenizer

    return Tokenizer.load("builtin:kjv-wordpiece")


@pytest.fixture(scope="session")
def bpe():
    """The shipped byte-level BPE tokenizer."""
    from uer.data.tokenizer import Tokenizer

    return Tokenizer.load("builtin:kjv-bpe")
