"""iqa_lab's classical metrics (``iqa_lab.classical``, the originals' conventions) timed per image
pair against the toolboxes: piq (always installed) and pyiqa (when importable, e.g. from a side
environment on ``PYTHONPATH``). The pairs are 512x384 (the size of the calibration pairs): shipped
pristine photos resized to it, each with a JPEG-compressed copy. Every side starts from the same
decoded uint8 arrays and converts them as its user would (piq: torchvision's ``to_tensor``, then
the metric's convention; pyiqa: float32 on [0, 1]).

piq is called in the convention closest to the original's (float64; grey = MATLAB ``rgb2gray``
for SSIM / MS-SSIM; data range 255), so the comparison is at the nearest accuracy piq offers:
it matches the originals for PSNR, SSIM, GMSD and FSIMc, pools MS-SSIM by the product, and has no
wavelet VIF (``vif_p`` stands in) and no offline BRISQUE / NIQE (their piq time is left out)."""

from __future__ import annotations

import importlib.util
import logging
import time
from collections.abc import Callable, Mapping

import numpy as np
import piq
import torch
from PIL import Image
from torchvision.transforms.functional import to_tensor as piq_user_tensor

from iqa_lab.classical.matlab import rgb2gray
from iqa_lab.classical.metrics import metric as classical_metric
from iqa_lab.data.distortions import distort
from iqa_lab.data.pristine import PRISTINE_PHOTOS, load_pristine

log = logging.getLogger("iqa_lab")

SIZE = (384, 512)  # height, width of the timed pairs


def _rgb(image: np.ndarray) -> torch.Tensor:
    return piq_user_tensor(np.array(image))[None].double()


def _grey(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(rgb2gray(image))[None, None]


PIQ_CALLS: dict[str, Callable] = {
    "psnr": lambda d, r: piq.psnr(_rgb(d), _rgb(r), data_range=1.0),
    "ssim": lambda d, r: piq.ssim(_grey(d), _grey(r), data_range=255.0, downsample=False),
    "ms_ssim": lambda d, r: piq.multi_scale_ssim(_grey(d), _grey(r), data_range=255.0),
    "fsim": lambda d, r: piq.fsim(_rgb(d).float() * 255, _rgb(r).float() * 255, data_range=255.0),
    "gmsd": lambda d, r: piq.gmsd(_rgb(d) * 255, _rgb(r) * 255, data_range=255.0),
    "vif": lambda d, r: piq.vif_p(_rgb(d), _rgb(r), data_range=1.0),
    "vif_p": lambda d, r: piq.vif_p(_rgb(d), _rgb(r), data_range=1.0),
}
PYIQA_NAMES = {"psnr": "psnr", "ssim": "ssim", "ms_ssim": "ms_ssim", "fsim": "fsim",
               "vif": "vif", "gmsd": "gmsd", "brisque_live": "brisque",
               "niqe_original": "niqe"}  # fmt: skip


def image_pairs(count: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``count`` (distorted, reference) 512x384 uint8 pairs from the shipped pristine photos."""
    names = sorted(PRISTINE_PHOTOS)
    pairs = []
    for i in range(count):
        photo = Image.fromarray(load_pristine(names[i % len(names)]))
        reference = np.asarray(photo.resize(SIZE[::-1], Image.Resampling.BICUBIC))
        pairs.append((distort(reference, "jpeg", 3, seed=i), reference))
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


def time_metric(metric: str, pairs: list[tuple], repeats: int) -> dict:
    """Seconds per pair (fastest of ``repeats``) of iqa_lab, piq when it has the metric, and
    pyiqa when it is importable. Every side gets its best of one torch thread and torch's
    configured threads: on a busy 2-core machine two threads made piq up to 10x slower."""
    chosen = classical_metric(metric)
    if chosen.full_reference:
        calls = {"iqa_lab_s_per_pair": chosen.compute}
    else:
        calls = {"iqa_lab_s_per_pair": lambda d, r: chosen.compute(d)}
    if metric in PIQ_CALLS:
        calls["piq_s_per_pair"] = PIQ_CALLS[metric]
    pyiqa_metric = _pyiqa_metric(metric)
    if pyiqa_metric is not None:
        if chosen.full_reference:
            calls["pyiqa_s_per_pair"] = lambda d, r: pyiqa_metric(
                piq_user_tensor(d)[None], piq_user_tensor(r)[None]
            )
        else:
            calls["pyiqa_s_per_pair"] = lambda d, r: pyiqa_metric(piq_user_tensor(d)[None])
    times = fastest_per_pair(calls, pairs, repeats)
    threads = torch.get_num_threads()
    if threads > 1:
        torch.set_num_threads(1)
        try:
            single = fastest_per_pair(calls, pairs, repeats)
        finally:
            torch.set_num_threads(threads)
        times.update({k: min(times[k], v) for k, v in single.items()})
    return times


def pyiqa_installed() -> bool:
    return importlib.util.find_spec("pyiqa") is not None


def _pyiqa_metric(metric: str):
    if not pyiqa_installed() or metric not in PYIQA_NAMES:
        return None
    import pyiqa

    try:
        return pyiqa.create_metric(PYIQA_NAMES[metric], device="cpu")
    except Exception as err:  # noqa: BLE001 - e.g. its BRISQUE / NIQE weights download offline
        log.warning("bench: pyiqa's %s is not available (%s); timed without it", metric, err)
        return None


def pixels_of(pairs: list[tuple]) -> int:
    return int(np.mean([d.shape[0] * d.shape[1] for d, _ in pairs]))
