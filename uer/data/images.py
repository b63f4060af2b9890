"""Batches of images for classification (ViT), and the pixel arithmetic of Hugging Face's image
processors that every image collator shares."""
from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

STANDARD_MEAN = STANDARD_STD = 0.5
"""Per-channel mean and std of the ViT reference preprocessing (transformers ``IMAGENET_STANDARD_*``:
ViT, BEiT, ViLT), which maps [0, 1] to [-1, 1]."""


def normalized(pixels: np.ndarray, mean, std) -> np.ndarray:
    """(H, W[, C]) uint8 -> (C, H, W) float32 as transformers' image processors (Pillow backend)
    compute it: scaled by 1/255 in float64, cast to float32, minus ``mean`` over ``std`` per channel
    (scalars or one value per channel) in float32."""
    a = pixels.reshape(pixels.shape[0], pixels.shape[1], -1)
    a = (a.astype(np.float64) * (1 / 255)).astype(np.float32)
    a = (a - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    return a.transpose(2, 0, 1)


def square_pixels(image: Image.Image, size: int, mode: str = "RGB") -> np.ndarray:
    """One image converted to ``mode`` (RGB or L), resized to size × size with Pillow's bicubic filter
    (the aspect ratio is not kept) and :func:`normalized` with mean = std = 0.5 -> (C, size, size)
    float32: what ``ViTImageProcessor``/``BeitImageProcessor`` make of any image, and
    ``ViltImageProcessor`` of a square one of that size."""
    image = image.convert(mode).resize((size, size), Image.Resampling.BICUBIC)
    return normalized(np.asarray(image), STANDARD_MEAN, STANDARD_STD)


class ImageCollator:
    """Decodes encoded images, resizes them to ``image_size`` (bicubic), scales to [-1, 1] with
    mean = std = 0.5 per channel (the ViT reference preprocessing; :func:`square_pixels`).

    ``__call__(rows: {"image": list[bytes], "label": list[int]}, rngs) -> {pixel_values
    (B, C, H, W) float32, labels (B,) int64}``.

    Args:
        image_size: output H = W in pixels.
        channels: 3 (RGB) or 1 (grayscale).
    """

    def __init__(self, image_size: int, channels: int = 3):
        self.image_size = image_size
        self.mode = {3: "RGB", 1: "L"}[channels]

    def __call__(self, rows: dict[str, list], rngs: list[np.random.Generator]) -> dict[str, torch.Tensor]:
        pixels = np.stack([square_pixels(Image.open(io.BytesIO(data)), self.image_size, self.mode)
                           for data in rows["image"]])
        return {"pixel_values": torch.from_numpy(pixels), "labels": torch.tensor(rows["label"], dtype=torch.int64)}
