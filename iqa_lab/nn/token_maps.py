"""Transformer pieces over CNN feature maps: map ↔ token conversions, a size-free convolutional
position encoding and a stack of timm ViT blocks (MS-SCANet's branches, the unified FR/NR
encoder)."""

from __future__ import annotations

import torch
from timm.models.vision_transformer import Block
from torch import nn

from iqa_lab.errors import ConfigError


def map_to_tokens(features: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W)`` → ``(B, H·W, C)``, row-major."""
    return features.flatten(2).transpose(1, 2)


def tokens_to_map(tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``(B, H·W, C)`` → ``(B, C, H, W)``, the inverse of ``map_to_tokens``."""
    return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], height, width)


class ConvPositionEncoding(nn.Module):
    """A depthwise 3×3 convolution added to the map (CPVT, Chu et al. 2023): positions are
    encoded from the neighbourhood, so any map size works without interpolating a table."""

    def __init__(self, dim: int):
        super().__init__()
        self.conv = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features + self.conv(features)


class TransformerEncoder(nn.Module):
    """``depth`` timm ViT blocks (pre-norm self-attention + MLP) and a final LayerNorm over
    ``(B, N, dim)`` tokens. ``dropout`` acts after the attention and MLP projections, not on the
    attention weights (on a CPU, dropping the ``N × N`` weights costs a fifth of the step)."""

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        drop_path: float = 0.0,
    ):
        super().__init__()
        if dim % num_heads:
            raise ConfigError(f"transformer dim {dim} is not divisible by num_heads {num_heads}")
        if depth < 1:
            raise ConfigError(f"transformer depth={depth}: give 1 or more blocks")
        self.blocks = nn.Sequential(
            *(
                Block(
                    dim,
                    num_heads,
                    mlp_ratio=mlp_ratio,
                    qkv_bias=True,
                    proj_drop=dropout,
                    attn_drop=0.0,
                    drop_path=drop_path,
                )
                for _ in range(depth)
            )
        )
        self.norm = nn.LayerNorm(dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.norm(self.blocks(tokens))


class CrossAttention(nn.Module):
    """Tokens of one sequence attend to another's (queries from ``x``, keys and values from
    ``context``), pre-norm, with a residual connection: ``x + MHA(LN(x), LN(c), LN(c))``."""

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0):
        super().__init__()
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim)
        self.attention = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        kv = self.norm_kv(context)
        return x + self.attention(self.norm_q(x), kv, kv, need_weights=False)[0]
