"""A photo with a LOCAL distortion and its reference, for looking at MLMS-IQA's quality map.

A centre crop of one of the shipped pristine photos (``iqa_lab.data.pristine``) is the reference;
the distorted copy has white noise (or a Gaussian blur) inside one box only. Both are written under
the same file name into ``<out>/distorted/`` and ``<out>/reference/``; then

    iqa-score ckpt=<an mlms_fr run>/checkpoints/<best>.ckpt inputs=<out>/distorted \
        reference=<out>/reference quality_maps=<out>/maps

draws the map over the distorted photo: the box should stand out (red = locally worst).

    python experiments/scripts/mlms_local_distortion.py --out /tmp/local --photo coffee
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from iqa_lab.data.pristine import load_pristine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--photo", default="coffee", help="a name of iqa_lab.data.pristine")
    parser.add_argument("--size", type=int, default=128, help="the crop's side, in pixels")
    parser.add_argument(
        "--box",
        type=int,
        nargs=4,
        default=[16, 16, 64, 64],
        help="top left bottom right of the distorted box",
    )
    parser.add_argument("--kind", choices=("noise", "blur"), default="noise")
    parser.add_argument(
        "--strength",
        type=float,
        default=40.0,
        help="noise: standard deviation (0..255); blur: Gaussian sigma (pixels)",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    photo = load_pristine(args.photo)
    height, width = photo.shape[:2]
    side = min(args.size, height, width)
    top, left = (height - side) // 2, (width - side) // 2
    reference = np.ascontiguousarray(photo[top : top + side, left : left + side])
    distorted = reference.astype(np.float64)
    y0, x0, y1, x1 = args.box
    if args.kind == "noise":
        rng = np.random.default_rng(args.seed)
        distorted[y0:y1, x0:x1] += rng.normal(0, args.strength, distorted[y0:y1, x0:x1].shape)
    else:
        blurred = cv2.GaussianBlur(distorted, (0, 0), args.strength)
        distorted[y0:y1, x0:x1] = blurred[y0:y1, x0:x1]
    distorted = distorted.clip(0, 255).round().astype(np.uint8)
    name = f"{args.photo}_{args.kind}_box.png"
    for folder, pixels in (("reference", reference), ("distorted", distorted)):
        (args.out / folder).mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(args.out / folder / name)
    print(f"{args.out / 'distorted' / name} (box {args.box}) and its reference")


if __name__ == "__main__":
    main()
