"""``model=musiq``: MUSIQ, the multi-scale image quality transformer (Ke, Wang, Wang, Milanfar &
Yang, ICCV 2021) on native-resolution images.

Each image (its real pixels: a padded batch's ``mask``, ``data.collate=pad``) becomes a
multi-scale pyramid: the image at its native size (longest side capped at ``max_native_side``
when set) and its aspect-ratio-preserving resizes to a longest side of each of ``scales``. Every
scale is cut into ``patch_size`` × ``patch_size`` patches (zero-padded up to a whole number of
patches), each embedded linearly; a patch at grid position ``(i, j)`` of a scale with ``H × W``
patches adds the hash-based 2D spatial embedding of cell ``(⌊i·G/H⌋, ⌊j·G/W⌋)`` of a learnt
``G × G`` grid, and the scale's learnt embedding. The tokens of all scales, behind a class token,
go through a transformer encoder (timm ``vision_transformer.Block``s); padded token positions are
masked out of attention, so images of different sizes batch together. The class token's output
→ LayerNorm → linear → score.

Choices (the abstract leaves them open; the paper's values where known): patches of 32 px, G =
10, scales of longest side 224 and 384 beside the native image (the paper's KonIQ-10k setting);
pixels scaled to [−1, 1]; resizing is bilinear with antialiasing. The paper's patch encoder is a
small ResNet stem on each patch and its encoder a 14-layer ViT (384 wide, 6 heads, MLP 1152)
initialised from ImageNet pre-training: here patches are embedded by one linear map and the
encoder is randomly initialised (no offline weights; ``conf/model/musiq.yaml`` gives the paper's
widths as an option and a CPU-sized default). The paper also caps the sequence length by
sampling patches; here every patch is kept (``max_native_side`` bounds the count).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import Block
from torch import nn

from iqa_lab.errors import ConfigError
from iqa_lab.models.base import IQAModule


def real_sizes(image: torch.Tensor, mask: torch.Tensor | None) -> list[tuple[int, int]]:
    """``(h, w)`` of each image's real pixels: the mask's extent, or the whole tensor."""
    if mask is None:
        return [tuple(image.shape[-2:])] * len(image)
    rows, cols = mask.any(dim=2).sum(dim=1), mask.any(dim=1).sum(dim=1)
    return list(zip(rows.tolist(), cols.tolist()))


def resize_longest(image: torch.Tensor, longest: int) -> torch.Tensor:
    """``(C, h, w)`` resized so that its longest side is ``longest``, aspect ratio kept."""
    h, w = image.shape[-2:]
    ratio = longest / max(h, w)
    size = (max(1, round(h * ratio)), max(1, round(w * ratio)))
    if size == (h, w):
        return image
    return F.interpolate(image[None], size=size, mode="bilinear", antialias=True)[0]


def hash_cells(rows: int, cols: int, grid: int) -> torch.Tensor:
    """Flat index ``⌊i·G/H⌋·G + ⌊j·G/W⌋`` into the ``G × G`` spatial grid of each patch ``(i, j)``
    of an ``H × W`` patch grid, in row-major order."""
    i = torch.arange(rows) * grid // rows
    j = torch.arange(cols) * grid // cols
    return (i[:, None] * grid + j[None, :]).flatten()


class MultiScalePatchEmbedding(nn.Module):
    """Images → one token sequence per image over every scale, with spatial and scale embeddings;
    returns ``(B, N, D)`` tokens and a ``(B, N)`` mask, True on real tokens."""

    def __init__(
        self,
        dim: int,
        patch_size: int,
        scales: list[int],
        native: bool,
        max_native_side: int | None,
        hash_grid: int,
    ):
        super().__init__()
        if not scales and not native:
            raise ConfigError("model=musiq needs at least one scale (model.scales or native)")
        self.patch_size, self.scales, self.native = patch_size, list(scales), native
        self.max_native_side, self.grid = max_native_side, hash_grid
        self.patch = nn.Conv2d(3, dim, kernel_size=patch_size, stride=patch_size)
        self.spatial = nn.Parameter(torch.zeros(hash_grid * hash_grid, dim))
        self.scale = nn.Parameter(torch.zeros(self.num_scales, dim))
        nn.init.trunc_normal_(self.spatial, std=0.02)
        nn.init.trunc_normal_(self.scale, std=0.02)

    @property
    def num_scales(self) -> int:
        return len(self.scales) + int(self.native)

    def pyramid(self, image: torch.Tensor) -> list[torch.Tensor]:
        """One real-pixel image ``(C, h, w)`` → its scales (native first, then ``scales``)."""
        views = []
        if self.native:
            cap = self.max_native_side
            views.append(
                resize_longest(image, cap) if cap and max(image.shape[-2:]) > cap else image
            )
        views += [resize_longest(image, longest) for longest in self.scales]
        return views

    def tokens(self, view: torch.Tensor, scale: int) -> torch.Tensor:
        p = self.patch_size
        h, w = view.shape[-2:]
        view = F.pad(view, (0, -w % p, 0, -h % p))
        patches = self.patch(view[None])[0]  # (D, rows, cols)
        rows, cols = patches.shape[-2:]
        cells = hash_cells(rows, cols, self.grid).to(patches.device)
        return patches.flatten(1).T + self.spatial[cells] + self.scale[scale]

    def forward(self, image: torch.Tensor, mask: torch.Tensor | None = None):
        sequences = []
        for picture, (h, w) in zip(image, real_sizes(image, mask)):
            views = self.pyramid(picture[:, :h, :w])
            sequences.append(torch.cat([self.tokens(v, s) for s, v in enumerate(views)]))
        lengths = torch.tensor([len(s) for s in sequences], device=image.device)
        tokens = nn.utils.rnn.pad_sequence(sequences, batch_first=True)
        real = torch.arange(tokens.shape[1], device=image.device)[None] < lengths[:, None]
        return tokens, real


class MUSIQ(IQAModule):
    def __init__(
        self,
        patch_size: int = 32,
        scales: list[int] = (224, 384),
        native: bool = True,
        max_native_side: int | None = None,
        hash_grid: int = 10,
        encoder: dict | None = None,
        init_bias: float = 0.5,
        **kwargs,
    ):
        super().__init__(**kwargs)
        encoder = dict(encoder or {})
        dim = int(encoder.get("dim", 192))
        depth, heads = int(encoder.get("depth", 4)), int(encoder.get("heads", 3))
        if dim % heads:
            raise ConfigError(f"model.encoder: dim {dim} must be a multiple of heads {heads}")
        self.embed = MultiScalePatchEmbedding(
            dim, patch_size, list(scales), native, max_native_side, hash_grid
        )
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        self.blocks = nn.ModuleList(
            Block(
                dim,
                heads,
                mlp_ratio=float(encoder.get("mlp_ratio", 3.0)),
                qkv_bias=True,
                proj_drop=float(encoder.get("dropout", 0.0)),
                attn_drop=float(encoder.get("attention_dropout", 0.0)),
            )
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.constant_(self.head.bias, init_bias)

    def explain_layer(self) -> str:
        raise ConfigError("model=musiq has no (B, C, H, W) feature map for Grad-CAM")

    def forward(self, image, *, reference=None, mask=None, heads=None) -> torch.Tensor:
        tokens, real = self.embed(image * 2 - 1, mask)
        cls = self.cls_token.expand(len(tokens), -1, -1)
        x = torch.cat([cls, tokens], dim=1)
        keep = torch.cat([torch.ones_like(real[:, :1]), real], dim=1)
        # additive mask: padded tokens take no part as keys (every query sees the class token)
        attn_mask = torch.zeros(keep.shape, dtype=x.dtype, device=x.device)
        attn_mask = attn_mask.masked_fill(~keep, float("-inf"))[:, None, None, :]
        for block in self.blocks:
            x = block(x, attn_mask=attn_mask)
        return self.head(self.norm(x[:, 0])).squeeze(-1)
