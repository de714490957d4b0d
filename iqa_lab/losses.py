"""Training losses for quality regression, in one place; selected by name from the model config
(``model.loss: <name>``, or ``{name: <name>, <weight>: <value>, ...}`` for a loss with weights)."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F

from iqa_lab.errors import ConfigError


def batch_plcc(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Pearson correlation over the batch; 0 where it is undefined (one image, or constant
    predictions or targets), with finite gradients there too."""
    pred, target = pred - pred.mean(), target - target.mean()
    return (pred * target).sum() / (pred.norm() * target.norm()).clamp_min(eps)


def plcc_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``(1 - PLCC) / 2`` over the batch: scale-free, rewards linear agreement."""
    return (1.0 - batch_plcc(pred, target)) / 2.0


def mse_plcc_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    mse_weight: float = 1.0,
    plcc_weight: float = 1.0,
) -> torch.Tensor:
    """``mse_weight · MSE + plcc_weight · (1 - PLCC) / 2`` over the batch (MSLIQA's "weighted
    combination of mean-squared error and PLCC loss", Jamshidi Avanaki et al. 2024)."""
    return mse_weight * F.mse_loss(pred, target) + plcc_weight * plcc_loss(pred, target)


def mae_plcc_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    mae_weight: float = 1.0,
    plcc_weight: float = 10.0,
) -> torch.Tensor:
    """QualityNet's loss (Aslam et al., Sci. Reports 2024, Eqs. 38–40):
    ``λ1 · MAE + λ2 · (1 - PLCC)``, the paper's λ1 = 1, λ2 = 10."""
    return mae_weight * F.l1_loss(pred, target) + plcc_weight * (1.0 - batch_plcc(pred, target))


LOSSES: dict[str, Callable[..., torch.Tensor]] = {
    "mse": F.mse_loss,
    "l1": F.l1_loss,
    "smooth_l1": F.smooth_l1_loss,
    "plcc": plcc_loss,
    "mse+plcc": mse_plcc_loss,
    "mae+plcc": mae_plcc_loss,
}


def get_loss(spec: str | Mapping) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The loss named ``spec``, or ``spec["name"]`` with the mapping's other keys as its weights."""
    settings = dict(spec) if isinstance(spec, Mapping) else {"name": spec}
    name = settings.pop("name", None)
    if name not in LOSSES:
        raise ConfigError(f"unknown loss '{name}'; known: {sorted(LOSSES)}")
    if not settings:
        return LOSSES[name]
    weights = list(inspect.signature(LOSSES[name]).parameters)[2:]
    unknown = sorted(set(settings) - set(weights))
    if unknown:
        raise ConfigError(
            f"model.loss: '{name}' has no setting {unknown}; its settings: {weights or 'none'}"
        )
    return functools.partial(LOSSES[name], **settings)


# --- MLMS-IQA's joint loss (multi-level and multi-scale deep IQA, §3, Eqs. 16–23) ---------------
# The paper's L_u is the prediction, L̂_u the MOS of image u; the sums run over the V images of a
# batch. Every term is usable on its own (``model.loss: kl_batch`` …) by any model.


def batch_softmax_kl(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Eqs. 17–19: ``KL(Ŵ ‖ W)`` with ``Ŵ = softmax(targets)`` and ``W = softmax(predictions)``
    over the batch: how differently the batch's quality mass is spread. The OCR'd Eq. 17 does not
    show which side is first; the target-first (forward) KL is the usual one for matching a
    target distribution, and the one chosen here."""
    log_w = F.log_softmax(pred, dim=0)
    log_w_hat = F.log_softmax(target, dim=0)
    return (log_w_hat.exp() * (log_w_hat - log_w)).sum()


def ordinal_pair_loss(
    pred: torch.Tensor, target: torch.Tensor, gamma: float = 1e-3
) -> torch.Tensor:
    """Eqs. 20–22, the mean over every pair ``u < k`` of the batch of

    ``max(0, ω_uk − (L_u − L_k)(L̂_u − L̂_k) / (|L̂_u − L̂_k| + γ))``,
    ``ω_uk = (L_u − L̂_u)² + (L_k − L̂_k)²``.

    The fraction is the predicted difference signed by the true order (γ keeps it finite for tied
    MOS); the penalty ω (Eq. 21, read as the pair's squared errors: the OCR shows two squared
    prediction-minus-MOS terms) is the margin, so the loss is zero exactly when the pair is
    ordered right by more than its errors. Eq. 22 sums the pairs; the mean keeps the term's size
    independent of the batch size (one weight ε for every batch size). 0 for a batch of one."""
    if len(pred) < 2:
        return pred.sum() * 0.0
    rows, cols = torch.triu_indices(len(pred), len(pred), offset=1, device=pred.device)
    true_diff = target[rows] - target[cols]
    signed = (pred[rows] - pred[cols]) * true_diff / (true_diff.abs() + gamma)
    penalty = (pred[rows] - target[rows]) ** 2 + (pred[cols] - target[cols]) ** 2
    return F.relu(penalty - signed).mean()


def mlms_joint_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    mse_weight: float = 1.0,
    kl_weight: float = 1.0,
    ordinal_weight: float = 1.0,
    gamma: float = 1e-3,
) -> torch.Tensor:
    """Eq. 23: ``β · MSE (Eq. 16) + α · KL (Eqs. 17–19) + ε · ordinal (Eqs. 20–22)``; the paper
    gives no values for β, α, ε or γ (``conf/model/mlms_*.yaml`` holds ours)."""
    return (
        mse_weight * F.mse_loss(pred, target)
        + kl_weight * batch_softmax_kl(pred, target)
        + ordinal_weight * ordinal_pair_loss(pred, target, gamma=gamma)
    )


LOSSES.update(
    {
        "kl_batch": batch_softmax_kl,
        "ordinal": ordinal_pair_loss,
        "mlms_joint": mlms_joint_loss,
    }
)


# --- Norm-in-Norm (Li, Jiang & Jiang, ACM MM 2020) and rating-distribution losses -------------


def norm_in_norm_loss(
    pred: torch.Tensor, target: torch.Tensor, p: float = 1.0, q: float = 2.0, eps: float = 1e-8
) -> torch.Tensor:
    """Norm-in-Norm (Li, Jiang & Jiang, "Norm-in-Norm Loss with Faster Convergence and Better
    Performance for Image Quality Assessment", ACM MM 2020).

    Predictions and MOS are each centred on their batch mean and divided by their ``q``-norm over
    the batch; the loss is ``(‖ŝ − ŷ‖_p / c)^p`` with ``c = 2^max(1, 1/q) · N^max(0, 1/p − 1/q)``,
    which bounds it by 1. Choices (the abstract leaves them open; these follow the authors'
    LinearityIQA code, ``IQAloss.norm_loss_with_normalization``): the defaults p = 1, q = 2 of
    the paper's recommended setting; gradients flow through the predictions' mean and norm (not
    detached); only the first term (``alpha = [1, 0]``: no ``ρ·ŝ − ŷ`` term); no monotonicity
    regulariser. A batch of one image has no norm: its loss is 0 (with a zero gradient).

    The loss ignores the scale and offset of the predictions, so a model trained with it maps
    its outputs to MOS by least squares after training (``fits_linear_map``; the module fits it
    on the validation predictions: ``models.base.IQAModule``)."""
    if len(pred) < 2:
        return (pred - pred.detach()).sum()
    pred = pred - pred.mean()
    pred = pred / (eps + torch.linalg.vector_norm(pred, ord=q))
    target = target - target.mean()
    target = target / (eps + torch.linalg.vector_norm(target, ord=q))
    n = len(pred)
    scale = 2.0 ** max(1.0, 1.0 / q) * n ** max(0.0, 1.0 / p - 1.0 / q)
    return (torch.linalg.vector_norm(pred - target, ord=p) / scale) ** p


norm_in_norm_loss.fits_linear_map = True
LOSSES["norm_in_norm"] = norm_in_norm_loss


def fits_linear_map(loss_fn: Callable) -> bool:
    """Whether a model trained with ``loss_fn`` needs a least-squares map of its outputs onto
    MOS after training (a scale-free loss such as Norm-in-Norm)."""
    return bool(getattr(getattr(loss_fn, "func", loss_fn), "fits_linear_map", False))


def emd_loss(logits: torch.Tensor, target: torch.Tensor, r: float = 2.0) -> torch.Tensor:
    """Earth mover's distance between the predicted rating distribution (``softmax(logits)``) and
    the target histogram ``(B, K)``, over ordered categories: ``(mean_k |CDF_p − CDF_t|^r)^(1/r)``
    per image, averaged over the batch (NIMA, Talebi & Milanfar 2018; MUSIQ trains its AVA
    distributions with it; r = 2 as both)."""
    cdf = torch.cumsum(logits.softmax(dim=-1), dim=-1)
    cdf_target = torch.cumsum(target / target.sum(dim=-1, keepdim=True), dim=-1)
    return ((cdf - cdf_target).abs().pow(r).mean(dim=-1).pow(1.0 / r)).mean()


def kl_distribution_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``KL(target ‖ softmax(logits))`` per image, averaged over the batch."""
    target = target / target.sum(dim=-1, keepdim=True)
    return F.kl_div(logits.log_softmax(dim=-1), target, reduction="batchmean")


DISTRIBUTION_LOSSES: dict[str, Callable[..., torch.Tensor]] = {
    "emd": emd_loss,
    "kl": kl_distribution_loss,
}


def get_distribution_loss(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """A loss between ``(B, K)`` logits and ``(B, K)`` rating histograms, by name."""
    if name not in DISTRIBUTION_LOSSES:
        raise ConfigError(
            f"unknown distribution loss '{name}'; known: {sorted(DISTRIBUTION_LOSSES)}"
        )
    return DISTRIBUTION_LOSSES[name]


# --- MS-SCANet's consistency losses (Mithila & Farias, ICASSP 2025) ------------------------------
# Auxiliary terms between the model's two branches (models/msscanet.py adds them to the training
# loss, weighted by its config); not prediction-vs-MOS losses, so not in LOSSES. The abstract names
# them without formulas; these are our definitions.


def _unit_channels(features: torch.Tensor, dim: int) -> torch.Tensor:
    """Features standardised over ``dim`` (a LayerNorm without affine parameters): the
    consistency terms compare patterns, so shrinking every feature cannot satisfy them."""
    mean = features.mean(dim=dim, keepdim=True)
    var = features.var(dim=dim, unbiased=False, keepdim=True)
    return (features - mean) / torch.sqrt(var + 1e-5)


def cross_branch_consistency_loss(fine: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
    """Cross-Branch Consistency: ``mean_b (1 − cos(f_b, c_b))`` between the ``(B, D)`` pooled
    features of the fine and the coarse branch of each image: both branches describe the same
    image's quality, so their global descriptors should point the same way."""
    return (1.0 - F.cosine_similarity(fine, coarse, dim=1)).mean()


def adaptive_pooling_consistency_loss(fine: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
    """Adaptive Pooling Consistency: the fine branch's ``(B, D, H, W)`` map, adaptive-average
    pooled to the coarse branch's ``(h, w)`` grid, should equal the coarse map there:
    ``mean_{b, i, j, d} (ẑ(P(F))_bijd − ẑ(G)_bijd)²`` with ``P`` the adaptive average pool and
    ``ẑ`` the standardisation over the ``D`` channels of each position (``_unit_channels``). The
    scale change is an area average (what the coarse branch's tokens summarise), not a linear or
    bilinear resampling."""
    pooled = F.adaptive_avg_pool2d(fine, coarse.shape[-2:])
    return (_unit_channels(pooled, 1) - _unit_channels(coarse, 1)).pow(2).mean()
