"""How forward passes run: one small settings object instead of device / autocast dtype / memory format / chunk
size travelling as separate arguments through every function."""
from __future__ import annotations

import contextlib
import functools
import itertools
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

# --amp of the three scripts; fp16 autocast is meant for CUDA (with a GradScaler when training)
AMP_DTYPES: dict[str, Optional[torch.dtype]] = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def check_device(use_gpu: bool, amp: str = "none") -> None:
    """One line, before any work, for ``--use_gpu`` without CUDA and for ``--amp fp16`` on a CPU: CPU float16
    autocast has no fast kernels (about 30x slower than float32); bfloat16 is the CPU's autocast dtype."""
    if use_gpu and not torch.cuda.is_available():
        raise ValueError("--use_gpu given but CUDA is not available (leave it out to run on the CPU)")
    if amp == "fp16" and not use_gpu:
        raise ValueError("--amp fp16 is for CUDA (--use_gpu); on a CPU it runs about 30x slower than float32: "
                         "use --amp bf16 or leave --amp out")


@functools.lru_cache(maxsize=None)
def cpu_has_native_bf16() -> bool:
    """Whether oneDNN has bfloat16 kernels for this CPU (AVX-512 and newer); without them CPU autocast to bfloat16
    is emulated, and ran 11x slower than float32 (EfficientNet-Lite0 at 224 px on an AVX2 AMD EPYC). Asked once:
    :meth:`ForwardSettings.autocast` runs on every step and chunk."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN's check: assume native rather than warn
        return True


@functools.lru_cache(maxsize=None)
def warn_emulated_bf16() -> None:
    """Once per process: --amp bf16 on a CPU that emulates it is a slow-down, not the speed-up it is elsewhere."""
    print("warning: --amp bf16 on a CPU without native bfloat16 kernels (oneDNN has none for it): autocast is "
          "emulated and several times slower than float32 here; leave --amp out on this machine",
          file=sys.stderr, flush=True)


@dataclass(frozen=True)
class ForwardSettings:
    """Where and how a model's forwards run.

    ``device``: where inputs go (None: the model's own device). ``amp``: an :data:`AMP_DTYPES` key, the autocast
    dtype. ``channels_last``: NHWC inputs (convert the model too for the full speed-up). ``chunk``: the most
    images forwarded at once by :meth:`logits` and :meth:`chunked` (a chunk that runs out of GPU memory is split
    further). ``compile``: :meth:`prepare_model` compiles the model with ``torch.compile`` (``model.compile()``).
    """

    device: Optional[torch.device] = None
    amp: str = "none"
    channels_last: bool = False
    chunk: int = 64
    compile: bool = False

    def __post_init__(self) -> None:
        if self.amp not in AMP_DTYPES:
            raise ValueError(f"--amp {self.amp}: expected one of {', '.join(AMP_DTYPES)}")
        if self.chunk < 1:
            raise ValueError(f"the forward chunk (--batch_size) must be >= 1, got {self.chunk}")

    @property
    def amp_dtype(self) -> Optional[torch.dtype]:
        return AMP_DTYPES[self.amp]

    def device_for(self, model: nn.Module) -> torch.device:
        """This setting's device, else the device of the model's first parameter or buffer (CPU for none)."""
        if self.device is not None:
            return torch.device(self.device)
        tensor = next(itertools.chain(model.parameters(), model.buffers()), None)
        return torch.device("cpu") if tensor is None else tensor.device

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        if device.type == "cpu" and self.amp_dtype == torch.bfloat16 and not cpu_has_native_bf16():
            warn_emulated_bf16()
        return torch.autocast(device_type=device.type, dtype=self.amp_dtype)

    def prepare(self, images: torch.Tensor, device: torch.device) -> torch.Tensor:
        """Inputs on ``device`` in this setting's memory format."""
        images = images.to(device, non_blocking=True)
        return images.contiguous(memory_format=torch.channels_last) if self.channels_last else images

    def prepare_model(self, model: nn.Module, device: torch.device) -> nn.Module:
        model.to(device)
        if self.compile:
            model.compile()
        return model.to(memory_format=torch.channels_last) if self.channels_last else model

    def logits(self, model: nn.Module, images: torch.Tensor) -> torch.Tensor:
        """float32 logits of ``images`` under ``inference_mode``, at most ``chunk`` images per forward (float32 before
        any softmax, so that bf16 logits do not quantise the probabilities)."""
        device = self.device_for(model)
        return self.chunked(images.shape[0], lambda start, stop: model(self.prepare(images[start:stop], device)),
                            device)

    def chunked(self, rows: int, run: Callable[[int, int], torch.Tensor], device: torch.device) -> torch.Tensor:
        """``run(start, stop)`` (the float32 results of rows ``start:stop``, built and forwarded on ``device``) over
        rows ``0:rows``, concatenated: at most ``chunk`` rows per call, under ``inference_mode`` and this setting's
        autocast. A chunk that runs out of GPU memory is split in halves (recursively), so a large chunk means "the
        largest that fits" and the results do not depend on it."""
        with torch.inference_mode():
            parts = [self._split_on_oom(run, start, min(start + self.chunk, rows), device)
                     for start in range(0, rows, self.chunk)]
        return torch.cat(parts) if parts else torch.empty(0, device=device)

    def _split_on_oom(self, run: Callable[[int, int], torch.Tensor], start: int, stop: int,
                      device: torch.device) -> torch.Tensor:
        try:
            with self.autocast(device):
                return run(start, stop).float()
        except torch.cuda.OutOfMemoryError:
            if stop - start == 1:
                raise
        if device.type == "cuda":
            torch.cuda.empty_cache()
        middle = (start + stop + 1) // 2
        return torch.cat([self._split_on_oom(run, start, middle, device),
                          self._split_on_oom(run, middle, stop, device)])
