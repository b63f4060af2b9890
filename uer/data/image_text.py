"""Batches of image-caption pairs (CLIP, Radford et al. 2021; ViLT, Kim et al. 2021), with the pixels
Hugging Face's CLIP or ViLT image processor makes, so a converted model sees what it saw in training."""
from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

from uer.data.images import normalized, square_pixels
from uer.data.padding import pad

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
"""Per-channel RGB mean and std of CLIP's training images (OpenAI CLIP, transformers ``OPENAI_CLIP_*``)."""


def clip_pixels(image: Image.Image, size: int, mean=CLIP_MEAN, std=CLIP_STD) -> np.ndarray:
    """One image as ``CLIPImageProcessor`` (transformers 5, Pillow backend) prepares it: converted to
    RGB, the shorter side resized to ``size`` (the longer to ``int(size · long / short)``) with
    Pillow's bicubic filter, center-cropped to size × size (top/left offsets rounded down), scaled
    by 1/255 (in float64, then float32) and normalized per channel -> (3, size, size) float32."""
    image = image.convert("RGB")
    width, height = image.size
    short, long = min(width, height), max(width, height)
    other = int(size * long / short)
    new_w, new_h = (size, other) if width <= height else (other, size)
    a = np.asarray(image.resize((new_w, new_h), Image.Resampling.BICUBIC))
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return normalized(a[top:top + size, left:left + size], mean, std)


IMAGE_PROCESSORS = {"clip": clip_pixels, "vilt": square_pixels}
"""The pixels of each Hugging Face image processor an image-text model may be converted with:
``name -> (image, size) -> (3, size, size) float32``. ViLT's (:func:`uer.data.images.square_pixels`)
keeps no aspect ratio: the image is resized to the model's square size, which ``ViltImageProcessor``
then leaves as it is (no padding, no mask)."""


class ImageTextCollator:
    """``__call__(rows: {"image": list[bytes], "input_ids": list[list[int]], ...}, rngs) -> {input_ids
    (B, S) int64 right-padded with the tokenizer's pad token, attention_mask (B, S) int64 (1 = real
    token), pixel_values (B, 3, image_size, image_size) float32 (``image_processor``'s), labels (B,)
    int64 when the rows have a ``label`` column (-1 = none)}``.

    Args:
        tokenizer: a :class:`uer.data.tokenizer.Tokenizer`; its pad token (else id 0) pads captions.
        image_size: the side of the model's square input images.
        image_processor: whose pixels, ``clip`` (:func:`clip_pixels`) or ``vilt``
            (:func:`uer.data.images.square_pixels`); see :data:`IMAGE_PROCESSORS`.

    Raises:
        ValueError: an unknown ``image_processor``.
    """

    def __init__(self, tokenizer, image_size: int, image_processor: str = "clip"):
        if image_processor not in IMAGE_PROCESSORS:
            raise ValueError(f"image_processor {image_processor!r} is not one of {', '.join(IMAGE_PROCESSORS)}")
        self.pixels = IMAGE_PROCESSORS[image_processor]
        self.image_size = image_size
        pad_id = getattr(tokenizer, "pad_token_id", None)
        self.pad_id = 0 if pad_id is None else pad_id

    def images(self, encoded: list[bytes]) -> torch.Tensor:
        """PNG (or any Pillow) bytes -> pixel_values (B, 3, image_size, image_size) float32."""
        return torch.from_numpy(np.stack([self.pixels(Image.open(io.BytesIO(data)), self.image_size)
                                          for data in encoded]))

    def captions(self, ids: list[list[int]]) -> dict[str, torch.Tensor]:
        """Token id lists -> input_ids and attention_mask (B, S) int64."""
        input_ids, mask = pad([list(row) for row in ids], self.pad_id)
        mask = np.ones_like(input_ids) if mask is None else mask
        return {"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(mask)}

    def __call__(self, rows: dict[str, list], rngs: list[np.random.Generator]) -> dict[str, torch.Tensor]:
        batch = {**self.captions(rows["input_ids"]), "pixel_values": self.images(rows["image"])}
        if "label" in rows:
            batch["labels"] = torch.tensor(rows["label"], dtype=torch.int64)
        return batch
