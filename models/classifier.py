"""A timm CNN whose global average pooling is replaced by a pooling head: ``gap``, ``ca`` or ``ca_last``.

* ``gap``: the backbone as timm builds it (the baseline).
* ``ca``: the CA stream, one block after the stem and after every stage (the paper's method).
* ``ca_last``: one CA block on the last feature map (the reference's ``*_final`` ablation).

The backbone's own classifier is reused: the final token, shaped (B, C, 1, 1), goes through timm's
``forward_head``, whose global pooling is then an identity. ``model(x)`` returns plain logits (as
grad-cam requires); ``forward_with_attention`` also returns every block's attention map.
"""
from __future__ import annotations

import weakref
from functools import partial
from typing import Callable, Iterator, Optional, Sequence

import torch
import torch.nn as nn

from .families import family_of
from .stream import CAStream

POOL_TYPES = ("gap", "ca", "ca_last")


def default_stream_taps(backbone: nn.Module) -> list[str]:
    """Modules whose outputs the ``ca`` stream attends, before the final feature map: the backbone family's
    (:mod:`models.families`); any other timm CNN: every ``feature_info`` stage."""
    return family_of(backbone).stream_taps(backbone)


def default_cam_target_layer(backbone: nn.Module) -> nn.Module:
    """The module whose output is the last feature map (the usual CAM target), as the backbone's family says."""
    return family_of(backbone).cam_target_layer(backbone)


def _store_output(store: dict, name: str, module: nn.Module, inputs, output) -> None:
    store[name] = output


class CAStreamClassifier(nn.Module):
    """A timm CNN (``backbone``) with a pooling head chosen by ``pool``."""

    def __init__(
            self,
            backbone: nn.Module,
            pool: str = "gap",
            num_heads: int = 1,
            taps: Optional[Sequence[str]] = None,
            project_last: Optional[bool] = None,
            attn_drop: float = 0.,
    ) -> None:
        super().__init__()
        if pool not in POOL_TYPES:
            raise ValueError(f"unknown pooling '{pool}': expected one of {', '.join(POOL_TYPES)}")
        if not hasattr(backbone, "forward_head") or not hasattr(backbone, "feature_info"):
            raise ValueError(f"{type(backbone).__name__} is not a timm CNN with feature_info and forward_head")
        self.backbone = backbone
        self.pool = pool
        self.num_classes = backbone.num_classes
        self.backbone_frozen = False
        self.taps: list[str] = []
        self.stream = None
        if pool != "gap":
            taps = list(default_stream_taps(backbone) if taps is None else taps) if pool == "ca" else []
            captured, final = self._probe(taps)
            # A tap whose output *is* the last feature map (ResNet's layer4) is attended once, last.
            self.taps = [name for name in taps if captured[name] is not final]
            dims = [captured[name].shape[1] for name in self.taps] + [final.shape[1]]
            # ca_last keeps the pooled token as is by default (the reference's --project default).
            project = (pool == "ca") if project_last is None else project_last
            self.stream = CAStream(dims, num_heads, project, attn_drop)
            init_stream = family_of(backbone).init_stream
            if init_stream is not None:
                init_stream(self.stream)

    @torch.no_grad()
    def _probe(self, taps: list[str]) -> tuple[dict, torch.Tensor]:
        """One small eval-mode forward to learn the tapped widths (running statistics untouched)."""
        for name in taps:
            try:
                self.backbone.get_submodule(name)
            except AttributeError:
                raise ValueError(f"stream tap '{name}' is not a module of {type(self.backbone).__name__}") from None
        was_training = self.backbone.training
        self.backbone.eval()
        try:
            device = next(self.backbone.parameters()).device
            return self._run_backbone(torch.zeros(1, 3, 64, 64, device=device), taps)
        finally:
            self.backbone.train(was_training)

    def _run_backbone(self, x: torch.Tensor, taps: Sequence[str]) -> tuple[dict, torch.Tensor]:
        """Runs ``forward_features`` and collects the outputs of the tapped modules."""
        captured: dict = {}
        # Hooks live only for this call, so copies of the model (EMA, DDP) never share them.
        handles = [self.backbone.get_submodule(name).register_forward_hook(partial(_store_output, captured, name))
                   for name in taps]
        try:
            final = self._backbone_features()(x)
        finally:
            for handle in handles:
                handle.remove()
        return captured, final

    def compile(self, *args, **kwargs) -> None:
        """``torch.compile`` of the backbone's feature extractor (``args``/``kwargs`` go to torch.compile), the
        part of every forward that costs. The stream's taps stay hooks registered around the compiled function,
        which Dynamo traces without recompiling (hooks registered inside compiled code break its graph), and the
        head stays eager. Unlike ``nn.Module.compile``, parameter names and deep copies (EMA) are unaffected: a
        copy compiles its own backbone when it first runs."""
        self._compile_options = (args, kwargs)
        self._compiled_features = None

    def _backbone_features(self) -> Callable[[torch.Tensor], torch.Tensor]:
        options = self.__dict__.get("_compile_options")
        if options is None:
            return self.backbone.forward_features
        compiled = self.__dict__.get("_compiled_features")
        # a deep copy shares the weak reference, which still names the original backbone: compile the copy's own
        if compiled is None or compiled[0]() is not self.backbone:
            compiled = (weakref.ref(self.backbone), torch.compile(self.backbone.forward_features, *options[0],
                                                                  **options[1]))
            self._compiled_features = compiled
        return compiled[1]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature map (B, C, H, W), as timm's ``forward_features``."""
        return self._backbone_features()(x)

    def forward_feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every feature map the pooling head reads, shallow to deep (only the last one for ``gap``)."""
        captured, final = self._run_backbone(x, self.taps)
        return [captured[name] for name in self.taps] + [final]

    def forward_head(
            self,
            feature_maps: Sequence[torch.Tensor],
            pre_logits: bool = False,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Pools the feature maps and classifies; returns (logits or pooled features, attention maps)."""
        if self.stream is None:
            return self.backbone.forward_head(feature_maps[-1], pre_logits=pre_logits), []
        token, attentions = self.stream(feature_maps)
        return self.backbone.forward_head(token[:, :, None, None], pre_logits=pre_logits), attentions

    def head_of_last_map(self, feature_maps: Sequence[torch.Tensor]) -> Callable[[torch.Tensor, torch.Tensor],
                                                                                  torch.Tensor]:
        """The head as a function of the last feature map alone: ``head(last, owners)`` gives the logits of the maps
        ``last`` (N, C, h, w), row ``n`` pooled with the earlier maps of image ``owners[n]`` of ``feature_maps``.

        Equals ``forward_head`` with the earlier maps repeated per row, without repeating them: what the stream
        computes before its last block is computed here once per image (the per-channel CAMs evaluate the head on
        thousands of variants of one image's last map).
        """
        if self.stream is None:
            return lambda last, owners: self.backbone.forward_head(last)
        earlier = list(feature_maps[:-1])
        token = self.stream.initial_token(feature_maps[-1].shape[0], feature_maps[-1].dtype)
        token, _ = self.stream.run_blocks(earlier, token)
        last_block = len(earlier)

        def head(last: torch.Tensor, owners: torch.Tensor) -> torch.Tensor:
            final, _ = self.stream.run_blocks([last], token[owners].to(last.dtype), last_block)
            return self.backbone.forward_head(final[:, :, None, None])
        return head

    def forward_with_attention(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits (B, classes) and each CA block's post-softmax attention (B, heads, H_k, W_k)."""
        return self.forward_head(self.forward_feature_maps(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stream is None:  # timm's own forward: forward_features, then forward_head
            return self.backbone.forward_head(self.forward_features(x))
        return self.forward_with_attention(x)[0]

    @property
    def cam_target_layer(self) -> nn.Module:
        """The default target layer for CAM methods: the module producing the last feature map."""
        return default_cam_target_layer(self.backbone)

    def stream_parameters(self) -> Iterator[nn.Parameter]:
        return iter(()) if self.stream is None else self.stream.parameters()

    def num_stream_parameters(self) -> int:
        return sum(p.numel() for p in self.stream_parameters())

    def freeze_backbone(self, frozen: bool = True) -> None:
        """The paper's protocol: backbone and classifier frozen (BatchNorm in eval), only the stream learns."""
        if frozen and self.stream is None:
            raise ValueError("freezing the backbone leaves nothing to train with pool='gap'")
        self.backbone_frozen = frozen
        self.backbone.requires_grad_(not frozen)
        self.train(self.training)

    def train(self, mode: bool = True) -> "CAStreamClassifier":
        super().train(mode)
        if self.backbone_frozen:
            # Frozen BatchNorm must neither normalise with batch statistics nor update running ones.
            self.backbone.eval()
        return self

