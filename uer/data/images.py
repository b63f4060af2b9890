"""Batches of images for classification (ViT)."""
from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image


class ImageCollator:
    """Decodes encoded images, resizes them to ``image_size`` (bicubic), scales to [-1, 1] with
    mean = std = 0.5 per channel (the ViT reference preprocessing).

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
        arrays = []
        for data in rows["image"]:
            image = Image.open(io.BytesIO(data)).convert(self.mode)
            image = image.resize((self.image_size, self.image_size), Image.Resampling.BICUBIC)
            a = np.asarray(image, dtype=np.float32).reshape(self.image_size, self.image_size, -1)
            arrays.append(a.transpose(2, 0, 1))
        pixels = (np.stack(arrays) / 255.0 - 0.5) / 0.5
        return {"pixel_values": torch.from_numpy(pixels), "labels": torch.tensor(rows["label"], dtype=torch.int64)}
