"""The multi-scale quality module of MLMS-IQA (multi-level and multi-scale deep IQA, §2, Figs. 1–4):
parallel spatial pooling scales, a learnable positional encoding shared by every scale, one
learnable scale encoding per scale, one Swin-Transformer stage per scale, one regressor per scale
and a learned fusion of the per-scale scores.

Readings of the OCR'd text (written here because the equations are garbled):

- Pooling scale ``u`` (Eq. 2) is an average pooling with kernel = stride = ``pool_sizes[u]``
  (``ceil_mode``: a map smaller than the kernel still gives one block), so any input size works;
  kernel 1 keeps the projected map itself.
- The positional encoding ``L`` (Eq. 3) is MUSIQ's hash-based 2-D spatial embedding (Ke et al.,
  ICCV 2021): a learnable ``H × H`` grid of ``dim``-vectors; block ``(u, k)`` of a ``G × Q`` map
  takes the vector at ``(floor(u·H/G), floor(k·H/Q))``, so every scale's grid maps onto the same
  table proportionally.
- The scale encoding is MUSIQ's too: one learnable ``dim``-vector per scale, added to every block
  of that scale.
- "B parallel Swin-Transformer blocks" with depths ``[2, 4, 4, 2]`` and heads ``[3, 6, 6, 3]``
  (Table 2): branch ``b`` is one timm ``SwinTransformerStage`` of ``depths[b]`` blocks with
  ``num_heads[b]`` heads (regular, then shifted windows: Eqs. 6–8), one branch per pooling scale.
- Each branch's blocks are average-pooled (over real pixels in a padded batch) into its regressor;
  the image score is the softmax-weighted sum of the per-scale scores, the weights learned
  ("multi-scale quality score fusion"; initialised equal).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from timm.models.swin_transformer import SwinTransformerStage
from torch import nn

from iqa_lab.errors import ConfigError
from iqa_lab.nn.heads import build_head
from iqa_lab.nn.pooling import masked_mean_pool


def grid_positions(rows: int, cols: int, table: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The positional-table row and column of each block of a ``rows × cols`` map (Eq. 3):
    ``floor(u · table / rows)``, ``floor(k · table / cols)``."""
    return (
        torch.arange(rows) * table // rows,
        torch.arange(cols) * table // cols,
    )


class PositionalEncoding(nn.Module):
    """A learnable ``table × table`` grid of ``dim``-vectors, looked up proportionally for any
    ``G × Q`` block map (``grid_positions``): ``forward(rows, cols)`` is ``(rows, cols, dim)``."""

    def __init__(self, dim: int, table: int):
        super().__init__()
        self.table = table
        self.weight = nn.Parameter(torch.zeros(table, table, dim))
        nn.init.trunc_normal_(self.weight, std=0.02)

    def forward(self, rows: int, cols: int) -> torch.Tensor:
        r, c = grid_positions(rows, cols, self.table)
        return self.weight[r.to(self.weight.device)][:, c.to(self.weight.device)]


class MultiScaleQuality(nn.Module):
    """``(B, dim, h, w)`` projected features → ``(B, U)`` per-scale scores and ``(B,)`` fused
    score (``forward`` returns both). The branch count is ``len(depths)``; ``pool_sizes`` and
    ``num_heads`` give one entry per branch."""

    def __init__(
        self,
        dim: int,
        pool_sizes: Sequence[int],
        depths: Sequence[int],
        num_heads: Sequence[int],
        head: Mapping,
        position_table: int = 10,
        window_size: int = 4,
        mlp_ratio: float = 4.0,
        drop_path: float = 0.0,
    ):
        super().__init__()
        pool_sizes, depths, num_heads = list(pool_sizes), list(depths), list(num_heads)
        if not (len(pool_sizes) == len(depths) == len(num_heads)) or not depths:
            raise ConfigError(
                f"model.multiscale: one pooling scale, depth and head count per Swin branch; got "
                f"pool_sizes={pool_sizes}, depths={depths}, num_heads={num_heads} (Table 2: "
                f"depths [2,4,4,2] with num_heads [3,6,6,3], or [4,4,4,4] with [6,6,6,6])"
            )
        bad = [h for h in num_heads if dim % h]
        if bad or min(pool_sizes) < 1:
            raise ConfigError(
                f"model.multiscale: embed_dim={dim} must be divisible by every head count "
                f"{num_heads} and pool_sizes {pool_sizes} must be >= 1"
            )
        self.pool_sizes = pool_sizes
        self.position = PositionalEncoding(dim, position_table)
        self.scale = nn.Parameter(torch.zeros(len(depths), dim))
        nn.init.trunc_normal_(self.scale, std=0.02)
        # input_resolution twice the window: the window and its shift stay as given; the real
        # size is read at each call (dynamic_mask), and maps pad to a multiple of the window.
        self.branches = nn.ModuleList(
            SwinTransformerStage(
                dim=dim,
                out_dim=dim,
                input_resolution=(2 * window_size, 2 * window_size),
                depth=depth,
                downsample=False,
                num_heads=heads,
                window_size=window_size,
                dynamic_mask=True,
                mlp_ratio=mlp_ratio,
                drop_path=drop_path,
            )
            for depth, heads in zip(depths, num_heads)
        )
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in depths)
        self.regressors = nn.ModuleList(build_head(dim, head) for _ in depths)
        self.fusion_logits = nn.Parameter(torch.zeros(len(depths)))

    def scale_maps(self, features: torch.Tensor) -> list[torch.Tensor]:
        """Each scale's pooled block map with positional and scale encodings, ``(B, G, Q, dim)``."""
        maps = []
        for u, size in enumerate(self.pool_sizes):
            pooled = features if size == 1 else F.avg_pool2d(features, size, ceil_mode=True)
            rows, cols = pooled.shape[-2:]
            tokens = pooled.permute(0, 2, 3, 1)
            maps.append(tokens + self.position(rows, cols) + self.scale[u])
        return maps

    def forward(
        self, features: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        scores = []
        for u, tokens in enumerate(self.scale_maps(features)):
            out = self.norms[u](self.branches[u](tokens)).permute(0, 3, 1, 2)
            scores.append(self.regressors[u](masked_mean_pool(out, mask)))
        per_scale = torch.stack(scores, dim=1)
        return per_scale, per_scale @ torch.softmax(self.fusion_logits, dim=0)
