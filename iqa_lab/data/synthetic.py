"""The embedded default database: pristine photos shipped by installed packages, cropped and
distorted KADID-10k-style, labelled with a SYNTHETIC pseudo-MOS from full-reference metrics.

The pseudo-MOS (1..5, higher = better) is not a human opinion score. Each full-reference metric
(computed by piq between the distorted crop and its pristine crop) is mapped linearly onto [0, 1]
between a ``worst`` and a ``best`` value given in the config, clipped, and the mapped values are
averaged with the config's weights: ``mos_raw = 1 + 4 * blend``. The database is written into the
user's cache in the common record schema (``labels.csv`` + PNG images) and reused while its
parameters are unchanged; it is deterministic for a given seed.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import piq
import torch
from PIL import Image

from iqa_lab.data.datamodule import IQADataModule
from iqa_lab.data.distortions import distort
from iqa_lab.data.pristine import load_pristine
from iqa_lab.data.records import make_records, read_records_csv, write_records_csv
from iqa_lab.files import temporary_sibling
from iqa_lab.progress import Progress

BUILD_VERSION = 2  # bump when the generation procedure changes, so old caches are not reused
MOS_RANGE = (1.0, 5.0)
_MS_SSIM_KERNEL = 11
_MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def _ms_ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    # Use as many of the five standard scales as the crop size allows (renormalised weights).
    side = min(x.shape[-2:])
    scales = int(np.clip(np.floor(np.log2((side - 1) / (_MS_SSIM_KERNEL - 1))) + 1, 1, 5))
    weights = torch.tensor(_MS_SSIM_WEIGHTS[:scales])
    return piq.multi_scale_ssim(
        x, y, data_range=1.0, reduction="none", scale_weights=weights / weights.sum()
    )


FR_METRICS = {
    "ms_ssim": _ms_ssim,
    "vif_p": lambda x, y: piq.vif_p(x, y, data_range=1.0, reduction="none"),
    "gmsd": lambda x, y: piq.gmsd(x, y, data_range=1.0, reduction="none"),
    "fsim": lambda x, y: piq.fsim(x, y, data_range=1.0, reduction="none"),
    "ssim": lambda x, y: piq.ssim(x, y, data_range=1.0, reduction="none"),
}


def pseudo_mos(
    distorted: np.ndarray, reference: np.ndarray, label_metrics: Mapping[str, Mapping[str, float]]
) -> tuple[np.ndarray, dict]:
    """Pseudo-MOS on 1..5 for a batch ``(N, H, W, 3)`` of distorted crops of one reference.

    ``label_metrics`` maps a metric name to ``{weight, worst, best}``; returns the scores and the
    raw metric values (for the record)."""

    def to_tensor(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2).float() / 255

    x = to_tensor(distorted)
    y = to_tensor(np.broadcast_to(reference, distorted.shape))
    raw, blend, total = {}, np.zeros(len(distorted)), 0.0
    with torch.no_grad():
        for name, spec in label_metrics.items():
            values = FR_METRICS[name](x, y).double().numpy()
            raw[name] = values
            mapped = np.clip((values - spec["worst"]) / (spec["best"] - spec["worst"]), 0.0, 1.0)
            blend += spec["weight"] * mapped
            total += spec["weight"]
    return MOS_RANGE[0] + (MOS_RANGE[1] - MOS_RANGE[0]) * blend / total, raw


def _crops(image: np.ndarray, count: int, size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``count`` crops of ``size``; the photo is first scaled so its short side is 2 x ``size``,
    keeping crops at a natural viewing scale whatever the photo's resolution."""
    h, w = image.shape[:2]
    scale = 2 * size / min(h, w)
    if scale < 1:
        image = np.asarray(
            Image.fromarray(image).resize(
                (round(w * scale), round(h * scale)), Image.Resampling.LANCZOS
            )
        )
    h, w = image.shape[:2]
    if min(h, w) < size:
        raise ValueError(f"photo of {h}x{w} is smaller than crop_size={size}")
    tops = rng.integers(0, h - size + 1, count)
    lefts = rng.integers(0, w - size + 1, count)
    return [image[top : top + size, left : left + size].copy() for top, left in zip(tops, lefts)]


def synthetic_key(params: Mapping) -> str:
    blob = json.dumps({"version": BUILD_VERSION, **params}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def build_synthetic(
    out_dir: str | Path,
    photos: Sequence[str],
    crops_per_photo: int,
    crop_size: int,
    distortions: Sequence[str],
    levels: Sequence[int],
    label_metrics: Mapping[str, Mapping[str, float]],
    include_pristine: bool,
    seed: int,
    progress: bool = True,
) -> pd.DataFrame:
    """Generate the database into ``out_dir`` (atomically) and return its records."""
    out_dir = Path(out_dir)
    # A folder of this build's own: the jobs of a multirun (a SLURM array, submitit) may build
    # the same database at once.
    tmp = temporary_sibling(out_dir)
    (tmp / "images").mkdir(parents=True)
    rows, raw_rows = [], []
    per_crop = len(distortions) * len(levels) + bool(include_pristine)
    bar = Progress(
        len(photos) * crops_per_photo * per_crop,
        "building synthetic database",
        "images",
        enabled=None if progress else False,
    )
    for p_idx, photo in enumerate(photos):
        rng = np.random.default_rng([seed, p_idx])
        for c_idx, crop in enumerate(_crops(load_pristine(photo), crops_per_photo, crop_size, rng)):
            crop_id = f"{photo}_c{c_idx}"
            variants = [(name, level) for name in distortions for level in levels]
            images = [
                distort(crop, name, level, seed=hash_seed(seed, crop_id, name, level))
                for name, level in variants
            ]
            if include_pristine:
                variants.append(("pristine", 0))
                images.append(crop)
            scores, raw = pseudo_mos(np.stack(images), crop, label_metrics)
            for i, ((name, level), image) in enumerate(zip(variants, images)):
                file = f"images/{crop_id}_{name}_{level}.png"
                Image.fromarray(image).save(tmp / file, compress_level=1)
                # Content separation is by photo: every crop and distortion shares one ref.
                rows.append(
                    {
                        "image": file,
                        "mos_raw": float(scores[i]),
                        "ref": photo,
                        "dist_type": name,
                        "dist_level": level,
                    }
                )
                raw_rows.append({"image": file, **{m: float(v[i]) for m, v in raw.items()}})
            bar.advance(len(variants))
    bar.close()
    records = make_records(pd.DataFrame(rows), db="synthetic", mos_range=MOS_RANGE)
    write_records_csv(records, tmp / "labels.csv")
    pd.DataFrame(raw_rows).to_csv(tmp / "fr_metrics.csv", index=False)
    _move_into_place(tmp, out_dir)
    return records


def _move_into_place(built: Path, out_dir: Path) -> None:
    """Rename the finished ``built`` folder to ``out_dir``; when a parallel build got there first,
    keep its database (the same: the build is deterministic) and drop ours."""
    if not (out_dir / "labels.csv").is_file():
        shutil.rmtree(out_dir, ignore_errors=True)  # an incomplete folder, not another build's
    try:
        built.rename(out_dir)
    except OSError:
        if not (out_dir / "labels.csv").is_file():
            raise
        shutil.rmtree(built, ignore_errors=True)


def pristine_references(records: pd.DataFrame) -> pd.Series:
    """Each record's reference: the pristine image of its crop (``build_synthetic`` names files
    ``images/<crop>_<dist_type>_<level>.png``; the pristine one is ``<crop>_pristine_0.png``)."""
    suffix = (
        "_"
        + records["dist_type"].astype(str)
        + "_"
        + records["dist_level"].astype(int).astype(str)
        + ".png"
    )
    return pd.Series(
        [
            image[: -len(end)] + "_pristine_0.png" if image.endswith(end) else None
            for image, end in zip(records["image"], suffix)
        ],
        index=records.index,
    )


def hash_seed(*parts) -> int:
    """A stable 32-bit seed from any parts (Python's ``hash`` is salted per process)."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:4], "little")


class SyntheticDataModule(IQADataModule):
    """``data=synthetic``: builds the database into ``cache_dir`` on first use, then reuses it."""

    def __init__(
        self,
        cache_dir: str,
        photos: Sequence[str],
        crops_per_photo: int,
        crop_size: int,
        distortions: Sequence[str],
        levels: Sequence[int],
        label_metrics: Mapping[str, Mapping[str, float]],
        include_pristine: bool,
        seed: int,
        label_scale: Mapping[str, float] | None = None,
        **kwargs,
    ):
        # How this database's scores relate to the pseudo-MOS q in [0, 1]:
        # mos = low + (high - low) * q ** gamma. Identity by default; other values imitate databases
        # whose MOS scales disagree (iterative mixed-database training, StairIQA §III-C).
        self.label_scale = {"low": 0.0, "high": 1.0, "gamma": 1.0, **dict(label_scale or {})}
        if not (
            self.label_scale["gamma"] > 0 and self.label_scale["high"] > self.label_scale["low"]
        ):
            raise ValueError(
                f"data.label_scale needs gamma > 0 and high > low, got {self.label_scale}"
            )
        self.build_params = {
            "photos": list(photos),
            "crops_per_photo": int(crops_per_photo),
            "crop_size": int(crop_size),
            "distortions": list(distortions),
            "levels": [int(v) for v in levels],
            "label_metrics": {k: dict(v) for k, v in label_metrics.items()},
            "include_pristine": bool(include_pristine),
            "seed": int(seed),
        }
        data_dir = Path(cache_dir).expanduser() / f"synthetic-{synthetic_key(self.build_params)}"
        super().__init__(data_dir=str(data_dir), mos_range=MOS_RANGE, lower_better=False, **kwargs)

    @property
    def synthetic_labels(self) -> bool:
        return True

    def prepare_data(self) -> None:
        if not (self.data_dir / "labels.csv").is_file():
            build_synthetic(self.data_dir, **self.build_params)

    def load_records(self) -> pd.DataFrame:
        self.prepare_data()
        records = read_records_csv(self.data_dir / "labels.csv")
        records["db"] = self.name  # several synthetic databases may sit side by side (data=mixed)
        if self.build_params["include_pristine"]:
            records["reference"] = pristine_references(records)
        if self.label_scale != {"low": 0.0, "high": 1.0, "gamma": 1.0}:
            low, high, gamma = (self.label_scale[k] for k in ("low", "high", "gamma"))
            records["mos"] = low + (high - low) * records["mos"].clip(0, 1) ** gamma
            records["mos_raw"] = MOS_RANGE[0] + (MOS_RANGE[1] - MOS_RANGE[0]) * records["mos"]
        return records
