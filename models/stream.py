"""The cross-attention stream of CA-Stream (Torres et al., CVPR XAI workshop 2024).

A learned CLS token attends over the feature map of several depths of a CNN. Each block follows the
paper's reference code exactly: the raw token is the query, the raw feature vectors are both keys and
values (no W_q / W_k / W_v), the scores are scaled by 1/sqrt(C) with C the block's *input* width (also
with several heads), softmax runs over the H*W positions, the new token is the attention-weighted mean
of the features, and a Linear maps it to the next block's width. There is no residual and no norm.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn as nn


class CrossAttentionBlock(nn.Module):
    """One CA block: ``token`` (B, C_in) attends over ``features`` (B, C_in, H, W).

    Returns the new token (B, C_out) and the post-softmax attention (B, heads, H, W).
    ``out_dim=None`` keeps the pooled token as it is (no projection), as the reference's ``*_final``
    models do by default.
    """

    def __init__(
            self,
            in_dim: int,
            out_dim: Optional[int] = None,
            num_heads: int = 1,
            attn_drop: float = 0.,
            proj_drop: float = 0.,
    ) -> None:
        super().__init__()
        if num_heads < 1 or in_dim % num_heads:
            raise ValueError(f"heads={num_heads} must divide the block width {in_dim}")
        self.in_dim = in_dim
        self.out_dim = out_dim or in_dim
        self.num_heads = num_heads
        # The reference scales by the full input width, not the per-head width (kept for fidelity).
        self.scale = in_dim ** -0.5
        self.attn_drop = nn.Dropout(attn_drop)
        if out_dim is None:
            self.proj = nn.Identity()
        else:
            self.proj = nn.Linear(in_dim, out_dim)
            nn.init.xavier_uniform_(self.proj.weight)
        self.proj_drop = nn.Dropout(proj_drop)

    def attention_logits(self, features: torch.Tensor, token: torch.Tensor) -> torch.Tensor:
        """Pre-softmax scores (B, heads, H*W) of the token against every position."""
        batch, channels = features.shape[:2]
        if channels != self.in_dim:
            raise ValueError(f"CA block expects {self.in_dim} channels, got a feature map of {channels}")
        keys = features.flatten(2).view(batch, self.num_heads, channels // self.num_heads, -1)
        query = token.reshape(batch, self.num_heads, 1, channels // self.num_heads)
        return (query @ keys).squeeze(2) * self.scale

    def forward(self, features: torch.Tensor, token: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch, channels, height, width = features.shape
        attn = self.attention_logits(features, token).softmax(dim=-1)
        values = features.flatten(2).view(batch, self.num_heads, channels // self.num_heads, -1)
        pooled = (values @ self.attn_drop(attn).unsqueeze(-1)).reshape(batch, channels)
        token = self.proj_drop(self.proj(pooled))
        return token, attn.view(batch, self.num_heads, height, width)


class CAStream(nn.Module):
    """A learned CLS token carried through one CA block per attended feature map.

    Block ``k`` attends over a map of width ``dims[k]`` and projects to ``dims[k + 1]``; the last block
    keeps ``dims[-1]`` (so the classifier's input width is unchanged), projected when ``project_last``.
    """

    def __init__(
            self,
            dims: Sequence[int],
            num_heads: int = 1,
            project_last: bool = True,
            attn_drop: float = 0.,
            proj_drop: float = 0.,
    ) -> None:
        super().__init__()
        if not dims:
            raise ValueError("a CA stream needs at least one feature map to attend")
        self.dims = list(dims)
        self.token = nn.Parameter(torch.empty(1, self.dims[0]))
        # N(1, 1) as in the reference: a zero-mean token would start with near-uniform attention.
        nn.init.normal_(self.token, mean=1.0, std=1.0)
        out_dims = self.dims[1:] + [self.dims[-1] if project_last else None]
        self.blocks = nn.ModuleList(
            CrossAttentionBlock(d_in, d_out, num_heads, attn_drop, proj_drop)
            for d_in, d_out in zip(self.dims, out_dims)
        )

    def forward(self, features: Sequence[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Returns the final token (B, dims[-1]) and each block's attention (B, heads, H_k, W_k)."""
        if len(features) != len(self.blocks):
            raise ValueError(f"the stream has {len(self.blocks)} blocks but got {len(features)} feature maps")
        return self.run_blocks(features, self.initial_token(features[0].shape[0], features[0].dtype))

    def initial_token(self, batch: int, dtype: torch.dtype) -> torch.Tensor:
        """The learned token (batch, dims[0]) that enters the first block."""
        return self.token.expand(batch, -1).to(dtype)

    def run_blocks(self, features: Sequence[torch.Tensor], token: torch.Tensor,
                   first: int = 0) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Blocks ``first`` .. ``first + len(features) - 1`` from ``token``: the stream in pieces, e.g. everything
        before the last block once per image, then the last block on many variants of the last feature map."""
        blocks = self.blocks[first:first + len(features)]
        if len(blocks) != len(features):
            raise ValueError(f"the stream has {len(self.blocks)} blocks: {len(features)} feature maps from block "
                             f"{first} do not fit")
        attentions = []
        for block, feature_map in zip(blocks, features):
            token, attn = block(feature_map, token)
            attentions.append(attn)
        return token, attentions
