"""BEST-RQ's random-projection quantizer (Chiu et al., 2022): frozen random projections onto frozen
random codebooks; an input's id is its cosine-nearest codebook entry. Nothing here is trained."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class RandomProjectionQuantizer(nn.Module):
    """``num_codebooks`` independent (projection, codebook) pairs, each giving one id per input vector.

    ``id[n, g] = argmax_v cos(x[n] @ projection[g], codebooks[g, v])``: the projection is
    Xavier-uniform and each codebook entry is standard normal, L2-normalised (paper section 3.1;
    NeMo ``RandomProjectionVectorQuantizer``, SpeechBrain ``RandomProjectionQuantizer``). Both are
    drawn from a ``torch.Generator`` seeded with ``seed``, so the same arguments rebuild them
    exactly, and are kept as persistent buffers (never parameters) so checkpoints hold them.

    Args:
        input_dim: size of an input vector (stacked fbank frames: ``stack_frames * num_mel_bins``).
        codebook_dim: size of the projected space (paper 16; NeMo ``code_dim``).
        codebook_size: entries per codebook (paper 8192; NeMo ``num_classes``).
        num_codebooks: independent pairs (paper 1; NeMo ``num_books``).
        seed: seeds the generator that draws the projections, then the codebooks.
    """

    def __init__(self, input_dim: int, codebook_dim: int, codebook_size: int, num_codebooks: int, seed: int) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        bound = math.sqrt(6.0 / (input_dim + codebook_dim))  # Xavier (Glorot) uniform, gain 1
        projection = (2.0 * torch.rand(num_codebooks, input_dim, codebook_dim, generator=generator) - 1.0) * bound
        codebooks = torch.randn(num_codebooks, codebook_size, codebook_dim, generator=generator)
        self.register_buffer("projection", projection)  # (G, input_dim, codebook_dim)
        self.register_buffer("codebooks", nn.functional.normalize(codebooks, dim=-1))  # (G, V, codebook_dim)

    @property
    def input_dim(self) -> int:
        return self.projection.shape[1]

    @property
    def num_codebooks(self) -> int:
        return self.codebooks.shape[0]

    @property
    def codebook_size(self) -> int:
        return self.codebooks.shape[1]

    @torch.no_grad()
    def forward(self, x: Tensor) -> Tensor:
        """``(N, input_dim)`` → ``(N, num_codebooks)`` long ids, computed in fp32 even under autocast."""
        if x.ndim != 2 or x.shape[1] != self.input_dim:
            raise ValueError(f"expected inputs (N, {self.input_dim}), got shape {tuple(x.shape)}")
        with torch.autocast(device_type=x.device.type, enabled=False):
            projected = torch.einsum("ni,gid->ngd", x.float(), self.projection.float())
            projected = nn.functional.normalize(projected, dim=-1)
            similarity = torch.einsum("ngd,gvd->ngv", projected, self.codebooks.float())
        return similarity.argmax(dim=-1)

    def extra_repr(self) -> str:
        return (f"input_dim={self.input_dim}, codebook_dim={self.codebooks.shape[2]}, "
                f"codebook_size={self.codebook_size}, num_codebooks={self.num_codebooks}")
