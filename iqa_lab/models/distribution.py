"""``model=distribution``: backbone → pooled features → MLP head with K logits (a rating
distribution over the categories 1..K, softmax), trained with an EMD or KL loss against the
image's rating histogram; MOS and SD are derived from the predicted distribution.

Targets: the batch's ``histogram`` where the database publishes one (KonIQ-10k's ``c1..c5``,
``records.histogram_columns``); otherwise (BIQ2021, synthetic) a distribution made from the MOS by
a label model (``data.rating_models``: ``label_model``) with the rating SD ``assumed_sd`` on the
1..K scale for every image. The score (``forward``, metrics, checkpoints selection) is the
predicted mean rating mapped onto [0, 1], ``(E[rating] − 1) / (K − 1)``: for KonIQ-10k, whose
0..100 MOS is a z-score mapping of the mean rating (not linear in it), SRCC is unaffected and
PLCC / RMSE compare a linear image of the mean rating with that MOS.

Test stage: the usual scoring (views, test-time augmentation), with ``test/loss`` the base
``loss`` (``model.loss``, MSE by default) of the derived score, since five-crop or TTA views have
no single distribution.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from iqa_lab.data import rating_models
from iqa_lab.errors import ConfigError
from iqa_lab.losses import get_distribution_loss
from iqa_lab.models.baseline import BaselineIQA


class DistributionIQA(BaselineIQA):
    def __init__(
        self,
        backbone: Mapping,
        head: Mapping,
        categories: int = 5,
        distribution_loss: str = "emd",
        label_model: str = "quantised_normal",
        assumed_sd: float = 0.57,
        **kwargs,
    ):
        super().__init__(backbone, {**head, "outputs": categories}, **kwargs)
        if categories < 2:
            raise ConfigError(f"model.categories={categories}: a distribution needs 2 or more")
        self.categories = categories
        self.distribution_loss = get_distribution_loss(distribution_loss)
        self.label_model_name = label_model
        rating_models.label_model(label_model, categories)  # an unknown name fails here
        self.assumed_sd = float(assumed_sd)
        self.register_buffer(
            "ratings", torch.arange(1, categories + 1, dtype=torch.float32), persistent=False
        )

    def logits(self, image, mask=None) -> torch.Tensor:
        """``(B, K)`` logits of the rating distribution."""
        return self.head(self.backbone(image, mask=mask))

    def mean_and_sd(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The predicted distribution's mean rating and SD, on the 1..K scale."""
        probs = logits.float().softmax(dim=-1)
        mean = probs @ self.ratings
        var = probs @ self.ratings**2 - mean**2
        return mean, var.clamp_min(0).sqrt()

    def to_score(self, logits: torch.Tensor) -> torch.Tensor:
        return (self.mean_and_sd(logits)[0] - 1) / (self.categories - 1)

    def forward(self, image, *, reference=None, mask=None, heads=None):
        return self.to_score(self.logits(image, mask))

    def target_distribution(self, batch: dict) -> torch.Tensor:
        """The batch's histograms, or distributions made from its MOS by the label model."""
        target = batch.get("histogram")
        if target is not None:
            if target.shape[-1] != self.categories:
                raise ConfigError(
                    f"the database's rating histograms have {target.shape[-1]} categories, "
                    f"model.categories={self.categories}: set model.categories="
                    f"{target.shape[-1]}"
                )
            return target.float()
        mos = batch["mos"].detach().float().cpu().numpy()
        pmf = rating_models.from_mos(mos, self.assumed_sd, self.label_model_name, self.categories)
        return torch.as_tensor(pmf, dtype=torch.float32, device=batch["mos"].device)

    def model_step(self, batch: dict, stage: str) -> tuple[torch.Tensor | None, torch.Tensor]:
        target = batch["mos"].float()
        if not len(target) or stage == "test":
            return super().model_step(batch, stage)
        logits = self.logits(batch["image"], batch.get("mask"))
        loss = self.distribution_loss(logits, self.target_distribution(batch))
        pred = self.to_score(logits)
        metrics, mean_loss = self._stage_metrics(stage)
        mean_loss.update(loss.detach(), weight=len(target))
        metrics.update(pred.detach(), target)
        return loss, pred
