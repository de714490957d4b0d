"""Quality maps as pictures (``eval quality_maps=<dir>``, ``iqa-score quality_maps=<dir>``): a
model's ``quality_map`` (``IQAModule.quality_map``: local quality, low = worse) as a heat map over
the image it was computed on, red where the image is locally worst, with the image score and the
map's range in a caption.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from iqa_lab.errors import ConfigError
from iqa_lab.evaluation.overlays import captioned, heat_map
from iqa_lab.files import atomic_path


def map_picture(image: torch.Tensor, quality: torch.Tensor, score: float, name: str):
    """The ``(C, H, W)`` image in [0, 1] with the ``(h, w)`` ``quality`` map resized over it
    (bilinear) as a heat map: per image, the worst position is red, the best blue."""
    pixels = (image.clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)
    resized = F.interpolate(
        quality[None, None].float(), size=image.shape[-2:], mode="bilinear", align_corners=False
    )[0, 0].cpu()
    low, high = float(resized.min()), float(resized.max())
    badness = ((high - resized) / max(high - low, 1e-12)).numpy()
    caption = [
        Path(name).name,
        f"score {score:.3f}; map {float(quality.min()):.3f}..{float(quality.max()):.3f}",
        "red = locally worst",
    ]
    return captioned(heat_map(pixels, badness), caption)


def write_quality_maps(
    model, batches: Iterable[tuple[dict, Sequence[str]]], out_dir: str | Path, device="cpu"
) -> list[Path]:
    """One PNG per image of ``batches`` (each a collated batch and its images' names) in
    ``out_dir``: ``<position>_<name's stem>_quality.png``. Returns the files written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    model.eval().to(device)
    with torch.inference_mode():
        for batch, names in batches:
            if not len(names):
                continue
            image = batch["image"].to(device)
            if not isinstance(batch["image"], torch.Tensor) or image.dim() != 4:
                raise ConfigError(
                    "quality maps need one view per image: use an eval transform without five "
                    "crops or zoom levels (data.transforms.eval)"
                )
            reference = batch.get("reference")
            mask = batch.get("mask")
            kwargs = {
                "reference": None if reference is None else reference.to(device),
                "mask": None if mask is None else mask.to(device),
            }
            maps = model.quality_map(image, **kwargs)
            if maps is None:
                raise ConfigError(
                    f"{type(model).__name__} predicts no quality map; quality_maps= works with "
                    f"models that do (model=mlms_fr)"
                )
            scores = model(image, **kwargs).float().cpu()
            for i, name in enumerate(names):
                path = out_dir / f"{len(written):05d}_{Path(str(name)).stem}_quality.png"
                with atomic_path(path) as tmp:
                    map_picture(image[i], maps[i], float(scores[i]), str(name)).save(
                        tmp, format="PNG"
                    )
                written.append(path)
    return written
