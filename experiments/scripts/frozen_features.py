"""Multi-level pooled features of a frozen ImageNet backbone, computed once per image and view.

Research helper for issue 15 item 3 (a fast recipe on BIQ2021). For each image, each block stage of
a timm EfficientNet (and its final 1x1 ``conv_head``) is pooled to its per-channel mean and
standard deviation; the stages are concatenated. A *view* is how the image meets the network:
``resize<S>`` resizes the whole image to S x S, ``resize<S>_flip`` also mirrors it.

Features are cached under ``~/.cache/iqa_lab/frozen_features/`` (override: ``IQA_LAB_CACHE``) in a
file named by backbone, weights file, view and a hash of the ordered image list (name, size,
mtime); a partial file lets an interrupted extraction resume.

    python experiments/scripts/frozen_features.py --data-dir ../shared/data/BIQ2021 \
        --backbone tf_efficientnet_lite0 --view resize384
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from iqa_lab.data.databases.biq2021 import parse_biq2021
from iqa_lab.nn.backbones import SHIPPED_WEIGHTS, Backbone

VIEW = re.compile(r"^resize(\d+)(_flip)?$")
SPLIT_FILES = {"Train (Images and MOS).csv": "train", "Test (Images and MOS).csv": "test"}


def cache_root() -> Path:
    return Path(os.environ.get("IQA_LAB_CACHE", Path.home() / ".cache" / "iqa_lab"))


def resolve_case(path: Path) -> Path:
    """``path``, or the one file in its folder whose name differs only in case (BIQ2021 labels
    ``ss02 (1014).jpg`` for a file stored as ``.JPG``)."""
    if path.is_file():
        return path
    matches = [p for p in path.parent.iterdir() if p.name.lower() == path.name.lower()]
    if len(matches) != 1:
        raise FileNotFoundError(f"{path}: no such image (nor one differing only in case)")
    return matches[0]


def biq2021_records(data_dir: Path) -> pd.DataFrame:
    """BIQ2021 records (iqa_lab's parser) with ``path``: each image's file on disk."""
    records = parse_biq2021(
        data_dir, SPLIT_FILES, image_dir="Images", mos_range=(0, 1), lower_better=False
    )
    records = records.dropna(subset=["mos"]).reset_index(drop=True)
    records["path"] = [resolve_case(data_dir / name) for name in records["image"]]
    return records


def parse_view(view: str) -> tuple[int, bool]:
    match = VIEW.match(view)
    if not match:
        raise SystemExit(f"--view {view}: expected resize<size> or resize<size>_flip")
    return int(match.group(1)), bool(match.group(2))


def load_view(path: Path, size: int, flip: bool) -> torch.Tensor:
    """The image as a (3, size, size) tensor in [0, 1]."""
    with Image.open(path) as img:
        img = img.convert("RGB")
        if img.size != (size, size):
            img = img.resize((size, size), Image.BICUBIC)
        if flip:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        array = np.asarray(img, dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1)


class StagePooler(torch.nn.Module):
    """Per-stage mean+std of a frozen timm EfficientNet: 7 block stages and the conv_head output
    (``iqa_lab``'s ``Backbone(pooling="stage_mean_std")``, the features of experiment=biq2021_fast).
    """

    def __init__(self, name: str):
        super().__init__()
        self.backbone = Backbone(name, pretrained=True, pooling="stage_mean_std").eval()

    @torch.inference_mode()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone(images)

    def stage_widths(self) -> list[int]:
        """Channels of each pooled stage, in feature order (each gives 2x: mean, std)."""
        return self.backbone.stage_widths()


def images_key(paths: list[Path]) -> str:
    digest = hashlib.blake2b(digest_size=8)
    for path in paths:
        stat = path.stat()
        digest.update(f"{path.name}|{stat.st_size}|{int(stat.st_mtime)}\n".encode())
    return digest.hexdigest()


# 2: the backbone is built without moving its BatchNorm statistics (Backbone.stage_widths probes in
# eval mode); version-1 files hold features of slightly shifted statistics.
FEATURES_VERSION = 2


def weights_key(backbone: str) -> str:
    """The weights file (name, size) and the features' version, without building a backbone."""
    path = SHIPPED_WEIGHTS[backbone].path()
    text = f"{path.name}|{path.stat().st_size}|v{FEATURES_VERSION}"
    return hashlib.blake2b(text.encode(), digest_size=4).hexdigest()


def cache_file(backbone: str, view: str, paths: list[Path]) -> Path:
    name = f"{backbone}-{weights_key(backbone)}-{view}-meanstd-{images_key(paths)}.npy"
    return cache_root() / "frozen_features" / name


def extract(paths: list[Path], backbone: str, view: str, batch: int = 16) -> np.ndarray:
    """The (n_images, dims) float32 features of ``paths`` under ``view``, from cache if there."""
    target = cache_file(backbone, view, paths)
    if target.is_file():
        return np.load(target)
    size, flip = parse_view(view)
    torch.set_num_threads(int(os.environ.get("IQA_LAB_THREADS", "2")))
    pooler = StagePooler(backbone)
    partial = target.with_suffix(".partial.npy")
    done = np.load(partial) if partial.is_file() else None
    rows = [done] if done is not None else []
    start = len(done) if done is not None else 0
    target.parent.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    for first in range(start, len(paths), batch):
        chunk = paths[first : first + batch]
        images = torch.stack([load_view(p, size, flip) for p in chunk])
        rows.append(pooler(images).numpy().astype(np.float32))
        finished = first + len(chunk)
        rate = (finished - start) / (time.perf_counter() - began)
        if (finished // batch) % 10 == 0 or finished == len(paths):
            np.save(partial, np.concatenate(rows))
            eta = (len(paths) - finished) / rate
            print(
                f"{backbone} {view}: {finished}/{len(paths)} images, {rate:.1f} img/s, "
                f"ETA {eta / 60:.1f} min",
                file=sys.stderr,
                flush=True,
            )
    features = np.concatenate(rows)
    np.save(target, features)
    partial.unlink(missing_ok=True)
    return features


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--backbone", default="tf_efficientnet_lite0", choices=SHIPPED_WEIGHTS)
    parser.add_argument("--view", default="resize384")
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args(argv)
    records = biq2021_records(args.data_dir)
    began = time.perf_counter()
    paths = list(records["path"])
    features = extract(paths, args.backbone, args.view, args.batch)
    print(
        f"{args.backbone} {args.view}: features {features.shape} in "
        f"{time.perf_counter() - began:.0f} s -> {cache_file(args.backbone, args.view, paths)}"
    )


if __name__ == "__main__":
    main()
