"""The classical metrics by name: what each computes, its direction and range, and one call for all
(``iqa_lab.classical.score``). The README's "Classical metrics" table describes the same list."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from iqa_lab.classical import brisque, fr, niqe, piq_variants, vif
from iqa_lab.data.images import load_rgb
from iqa_lab.errors import ConfigError


@dataclass(frozen=True)
class Metric:
    """A metric: ``compute(image)`` or ``compute(distorted, reference)`` on uint8 RGB arrays."""

    name: str
    compute: Callable
    full_reference: bool
    higher_better: bool
    value_range: str


def _fr(name, compute, higher_better=True, value_range="[0, 1]") -> Metric:
    return Metric(name, compute, True, higher_better, value_range)


def _nr(name, compute, value_range) -> Metric:
    return Metric(name, compute, False, False, value_range)


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        _fr("psnr", fr.psnr, value_range="[0, inf) dB"),
        _fr("ssim", fr.ssim, value_range="[-1, 1]"),
        _fr(
            "ssim_downsampled",
            lambda d, r: fr.ssim(d, r, downsample=True),
            value_range="[-1, 1]",
        ),
        _fr("ms_ssim", fr.ms_ssim),
        _fr("ms_ssim_product", lambda d, r: fr.ms_ssim(d, r, pooling="product")),
        _fr("fsim", piq_variants.fsim),
        _fr("vif", vif.vif, value_range="[0, 1] (above 1: contrast enhanced)"),
        _fr("vif_p", piq_variants.vif_p, value_range="[0, 1] (above 1: contrast enhanced)"),
        _fr("gmsd", fr.gmsd, higher_better=False, value_range="[0, 1)"),
        _fr("psnr_piq", piq_variants.psnr_piq, value_range="[0, inf) dB"),
        _fr("ssim_piq", piq_variants.ssim_piq, value_range="[-1, 1]"),
        _fr("ms_ssim_piq", piq_variants.ms_ssim_piq),
        _fr("fsim_piq", piq_variants.fsim_piq),
        _fr("gmsd_piq", piq_variants.gmsd_piq, higher_better=False, value_range="[0, 1)"),
        _nr("brisque_live", brisque.score, "about [0, 100] (can leave it)"),
        _nr("brisque_package", brisque.package_score, "about [0, 100] (can leave it)"),
        _nr("niqe_original", niqe.original_score, "[0, inf)"),
    )
}


def names() -> tuple[str, ...]:
    """The names ``score`` accepts."""
    return tuple(METRICS)


def metric(name: str) -> Metric:
    if name not in METRICS:
        raise ConfigError(f"unknown classical metric '{name}'; known: {', '.join(METRICS)}")
    return METRICS[name]


def _image(value, what: str) -> np.ndarray:
    if isinstance(value, (str, Path)):
        return load_rgb(value)
    array = np.asarray(value)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[-1] != 3:
        raise ValueError(
            f"the {what} must be a path or a uint8 RGB array (H, W, 3), got {array.dtype} "
            f"{array.shape}"
        )
    return array


def score(name: str, image, reference=None) -> float:
    """``name``'s value of one image (a path or a uint8 RGB ``(H, W, 3)`` array) in the metric's
    own units and direction; full-reference metrics need ``reference`` (same kinds, same size).
    """
    chosen = metric(name)
    image = _image(image, "image")
    if chosen.full_reference:
        if reference is None:
            raise ConfigError(f"{name} is full-reference: give the reference image too")
        return float(chosen.compute(image, _image(reference, "reference")))
    if reference is not None:
        raise ConfigError(f"{name} is no-reference: it takes no reference image")
    return float(chosen.compute(image))
