"""Which torch device a run uses: the one rule for training, evaluation and feature extraction.

Torch only and nothing else of the project, so ``features`` may import it (``tests/test_layering.py``).
"""

from __future__ import annotations

import torch


def resolve_device(device: str = "auto", local_rank: int = 0) -> torch.device:
    """``auto`` → this process's GPU when one is visible, else the CPU; a bare ``cuda`` means the GPU of
    ``local_rank`` (one per process under ``torchrun``). Asking for CUDA without one is a clear error."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r}: CUDA is not available on this machine; use cpu or auto")
        if dev.index is None:
            dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    return dev
