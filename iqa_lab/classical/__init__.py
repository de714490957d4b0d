"""Classical image-quality metrics, each as its original implementation computes it (the README's
"Classical metrics" table): ``score(name, image, reference=None)`` and ``names()``.

Modules: ``matlab`` (the MATLAB functions the originals call), ``fr`` (PSNR, SSIM, MS-SSIM, GMSD),
``piq_variants`` (FSIMc, VIF-p and piq's defaults as ``*_piq``), ``nss`` (MSCN, GGD/AGGD fits),
``brisque``, ``niqe``, ``metrics`` (the names), and ``cache`` (per-image feature cache).
"""

from iqa_lab.classical.metrics import names, score

__all__ = ["names", "score"]
