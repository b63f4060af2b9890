"""King James verses rendered into images: an embedded image-text set harder than the captioned digits
(``data.corpus=builtin:kjv-rendered`` of processor ``image_text``).

Every verse of the shipped King James Bible (``uer/data/default/kjv.txt``, 31,102 verses, public
domain) gives one pair: its first :data:`SPAN_WORDS` words as the caption, and the same words drawn
into a :data:`CANVAS` x :data:`CANVAS` grayscale image with Pillow's embedded font
(``ImageFont.load_default(size=...)``, Pillow >= 10.1, so no system font is needed). Spans that
repeat (many verses open "And the LORD spake unto Moses,") are kept once, compared lower-cased as
the uncased tokenizer sees them, so a held-out caption never appears among the training pairs:
28,486 distinct pairs. A random split of the rows (``data.eval_samples``) thus holds out whole verses.

Each image draws from its own ``random.Random(f"{seed}:{span}")``: the font size
(:data:`FONT_SIZES` pixels, shrunk until the greedily wrapped lines fit), the block's position
inside the margin, and the paper and ink gray levels, so the task is reading the words, not
looking up fixed pixels; the same seed gives the same bytes. Read at ``model.vision.image_size``
64 (e.g. ``patch_size`` 8): at 32 the collator's downscaling leaves the letters unreadable.
Captions are the verse's own words, so this set has no classes (no zero-shot accuracy).
"""

from __future__ import annotations

import functools
import hashlib
import random
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont, features

from uer.errors import UerError
from uer.preprocess.corpus import default_corpus

RENDERED_KJV = "builtin:kjv-rendered"
"""The ``data.corpus`` value that selects this set."""
SPAN_WORDS = 6
"""Words of each verse rendered and captioned (its opening words)."""
CANVAS = 64
"""Side of the square rendered image, in pixels."""
FONT_SIZES = (10, 11, 12, 13)
"""Font sizes (pixels) an image draws from; smaller down to :data:`MIN_FONT_SIZE` if its lines do not fit."""
MIN_FONT_SIZE = 7
MARGIN = 2
"""Blank pixels kept on every side of the text block."""


@functools.cache
def _font(size: int) -> ImageFont.FreeTypeFont:
    """Pillow's embedded scalable font at ``size`` pixels (cached per process)."""
    font = ImageFont.load_default(size=size)
    if not isinstance(font, ImageFont.FreeTypeFont):  # Pillow built without FreeType: a fixed 11 px bitmap font
        raise UerError(f"data.corpus={RENDERED_KJV}: needs Pillow with FreeType (PIL.features.check('freetype2'))")
    return font


def wrap(words: list[str], font: ImageFont.FreeTypeFont, width: int) -> list[str]:
    """Words joined into lines greedily, each at most ``width`` pixels wide in ``font`` (a word
    wider than ``width`` gets a line of its own)."""
    lines: list[str] = []
    for word in words:
        if lines and font.getlength(f"{lines[-1]} {word}") <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines


def render(text: str, rng: random.Random, side: int = CANVAS) -> np.ndarray:
    """``text`` drawn into a (side, side) uint8 grayscale image: a font size from :data:`FONT_SIZES`
    (shrunk, down to :data:`MIN_FONT_SIZE`, until the wrapped block fits inside :data:`MARGIN`;
    past that it is clipped), the block placed at a random offset inside the margin, paper gray
    in [200, 255] and ink gray in [0, 70], all drawn from ``rng`` in that order."""
    size, offset_x, offset_y = rng.choice(FONT_SIZES), rng.random(), rng.random()
    paper, ink = rng.randint(200, 255), rng.randint(0, 70)
    room = side - 2 * MARGIN
    while True:
        font = _font(size)
        lines = wrap(text.split(), font, room)
        ascent, descent = font.getmetrics()
        width, height = max(font.getlength(line) for line in lines), len(lines) * (ascent + descent)
        if (width <= room and height <= room) or size <= MIN_FONT_SIZE:
            break
        size -= 1
    left = MARGIN + int(offset_x * max(0.0, room - width))
    top = MARGIN + int(offset_y * max(0, room - height))
    image = Image.new("L", (side, side), paper)
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(lines):
        draw.text((left, top + i * (ascent + descent)), line, fill=ink, font=font)
    return np.asarray(image)


@dataclass(frozen=True)
class Rendering:
    """One image still to draw (cheap to send to a worker process): ``text`` by :func:`render` with
    ``random.Random(f"{seed}:{text}")``."""

    text: str
    seed: int

    def pixels(self) -> np.ndarray:
        """The (CANVAS, CANVAS) uint8 grayscale image."""
        return render(self.text, random.Random(f"{self.seed}:{self.text}"))


def verse_spans(words: int = SPAN_WORDS) -> list[str]:
    """The first ``words`` words of every verse of the shipped KJV, in Bible order, each distinct
    span (compared lower-cased) kept at its first occurrence."""
    seen, spans = set(), []
    for line in default_corpus().read_text(encoding="utf-8").splitlines():
        span = " ".join(line.split()[:words])
        if span and span.lower() not in seen:
            seen.add(span.lower())
            spans.append(span)
    return spans


def rendered_pairs(seed: int) -> tuple[list[tuple[Rendering, str, int]], str]:
    """The pairs of ``builtin:kjv-rendered`` as processor ``image_text`` items (image to draw,
    caption, label -1) and their content digest: sha256 over the rendering constants, the Pillow
    and FreeType versions (their glyphs decide the pixels), the seed and every caption."""
    spans = verse_spans()
    digest = hashlib.sha256(repr((RENDERED_KJV, SPAN_WORDS, CANVAS, FONT_SIZES, MIN_FONT_SIZE, MARGIN,
                                  Image.__version__, features.version("freetype2"), seed)).encode())
    for span in spans:
        digest.update(f"\0{span}".encode())
    return [(Rendering(span, seed), span, -1) for span in spans], digest.hexdigest()
