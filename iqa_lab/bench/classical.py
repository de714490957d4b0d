"""iqa_lab's classical full-reference metrics (``classical.fr``, model=classical's conventions)
timed against the same metric called in piq directly (and in pyiqa when installed), per image
pair. Both sides start from the same decoded 8-bit images; the piq side converts them as a piq user
would (torchvision's ``to_tensor``: contiguous, on [0, 1]) to the dtype iqa_lab computes in, and
calls piq with the same options. piq's time in float32 is kept beside it (``detail``), since
float64 costs more on a CPU."""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import piq
import torch
from piq.functional import rgb2yiq
from torchvision.transforms.functional import to_tensor as piq_user_tensor

from iqa_lab.classical.fr import fr_score, ms_ssim_weights, to_tensor
from iqa_lab.data.images import load_rgb

PIQ_FUNCTIONS = {
    "psnr": piq.psnr,
    "ssim": piq.ssim,
    "ms_ssim": piq.multi_scale_ssim,
    "fsim": piq.fsim,
    "vif_p": piq.vif_p,
    "gmsd": piq.gmsd,
}
PYIQA_NAMES = {"psnr": "psnr", "ssim": "ssim", "ms_ssim": "ms_ssim", "fsim": "fsim",
               "vif_p": "vif", "gmsd": "gmsd"}  # fmt: skip


def image_pairs(records: pd.DataFrame, data_dir: Path, count: int) -> list[tuple]:
    """``count`` (distorted, reference) uint8 pairs: test images with their references when the
    database has them, else consecutive test images cropped to their common size."""
    rows = records[records["split"] == "test"].head(count + 1)
    if len(rows) < 2:
        raise ValueError("the bench's classical timing needs at least 2 test images")
    pairs = []
    for i in range(min(count, len(rows) - 1)):
        distorted = load_rgb(data_dir / rows["image"].iloc[i])
        if "reference" in rows and pd.notna(rows["reference"].iloc[i]):
            reference = load_rgb(data_dir / rows["reference"].iloc[i])
        else:
            reference = load_rgb(data_dir / rows["image"].iloc[i + 1])
        h = min(distorted.shape[0], reference.shape[0])
        w = min(distorted.shape[1], reference.shape[1])
        pairs.append((distorted[:h, :w], reference[:h, :w]))
    return pairs


def fastest_per_pair(calls: Mapping[str, Callable], pairs: list[tuple], repeats: int) -> dict:
    """Seconds per pair of each call, the fastest of ``repeats`` per pair. The calls take turns
    within each repeat, so a burst of other work on a shared machine slows all of them alike."""
    best = {name: [float("inf")] * len(pairs) for name in calls}
    for _ in range(repeats):
        for i, (distorted, reference) in enumerate(pairs):
            for name, call in calls.items():
                start = time.perf_counter()
                call(distorted, reference)
                best[name][i] = min(best[name][i], time.perf_counter() - start)
    return {name: sum(seconds) / len(pairs) for name, seconds in best.items()}


def piq_call(metric: str, options: Mapping) -> Callable:
    """``f(x, y)`` calling piq's ``metric`` with ``options`` on float tensors; ``luminance``
    (iqa_lab's option) becomes piq's own RGB → YIQ conversion first."""
    options = dict(options)
    luminance = options.pop("luminance", False)
    function = PIQ_FUNCTIONS[metric]

    def call(x, y):
        if luminance:
            x, y = rgb2yiq(x)[:, :1], rgb2yiq(y)[:, :1]
        extra = {}
        if metric == "ms_ssim":
            extra["scale_weights"] = ms_ssim_weights(
                min(x.shape[-2:]), options.get("kernel_size", 11)
            )
        return function(x, y, data_range=1.0, **options, **extra)

    return call


def time_metric(metric: str, options: Mapping, pairs: list[tuple], repeats: int) -> dict:
    """Seconds per pair (fastest of ``repeats``) for iqa_lab, piq (iqa_lab's dtype, and float32)
    and, if installed, pyiqa (float32)."""
    dtype = to_tensor(pairs[0][0][:1, :1]).dtype

    def through(function, dtype):
        return lambda d, r: function(
            piq_user_tensor(d)[None].to(dtype), piq_user_tensor(r)[None].to(dtype)
        )

    piq_metric = piq_call(metric, options)
    calls = {
        "iqa_lab_s_per_pair": lambda d, r: fr_score(metric, d, r, options),
        "piq_s_per_pair": through(piq_metric, dtype),
        "piq_float32_s_per_pair": through(piq_metric, torch.float32),
    }
    pyiqa_metric = _pyiqa_metric(metric)
    if pyiqa_metric is not None:
        calls["pyiqa_s_per_pair"] = through(pyiqa_metric, torch.float32)
    times = {**fastest_per_pair(calls, pairs, repeats), "dtype": str(dtype).removeprefix("torch.")}
    return times


def pyiqa_installed() -> bool:
    return importlib.util.find_spec("pyiqa") is not None


def _pyiqa_metric(metric: str):
    if not pyiqa_installed():
        return None
    import pyiqa

    return pyiqa.create_metric(PYIQA_NAMES[metric], device="cpu")


def pixels_of(pairs: list[tuple]) -> int:
    return int(np.mean([d.shape[0] * d.shape[1] for d, _ in pairs]))
