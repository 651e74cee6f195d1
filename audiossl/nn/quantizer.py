"""Gumbel-softmax product quantizer (wav2vec 2.0's targets), driven by an explicit generator."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass
class QuantizerOutput:
    """vectors: ``(N, codebook_dim)`` quantized vectors; codes: ``(N, G)`` chosen entry per group;
    code_perplexity: perplexity of the chosen entries over the N vectors, summed over groups;
    prob_perplexity: the same of the mean softmax probabilities (what the diversity loss raises)."""

    vectors: Tensor
    codes: Tensor
    code_perplexity: Tensor
    prob_perplexity: Tensor


def perplexity(probs: Tensor) -> Tensor:
    """``exp(entropy)`` of each group's distribution ``(G, V)``, summed over groups (fairseq's, with its 1e-7)."""
    return torch.exp(-(probs * torch.log(probs + 1e-7)).sum(-1)).sum()


class GumbelProductQuantizer(nn.Module):
    """G codebooks of V entries; each input picks one entry per group and the picks are concatenated.

    Logits ``weight_proj(x)`` ``(N, G, V)`` choose the entries: in training by a straight-through
    Gumbel softmax at the given temperature (hard one-hot forward, soft gradient), in eval mode by
    argmax. fairseq ``GumbelVectorQuantizer`` (``combine_groups=False``, ``weight_proj_depth=1``);
    HF ``Wav2Vec2GumbelVectorQuantizer``.

    Args:
        input_dim: size of the input features (fairseq ``dim``, the CNN's channels).
        num_groups: G (fairseq ``latent_groups``, 2).
        num_entries: V per group (fairseq ``latent_vars``, 320).
        codebook_dim: size of a quantized vector (fairseq ``vq_dim``); each group's entries have
            ``codebook_dim / G`` dimensions.
    """

    def __init__(self, input_dim: int, num_groups: int, num_entries: int, codebook_dim: int) -> None:
        super().__init__()
        if codebook_dim % num_groups:
            raise ValueError(f"codebook_dim {codebook_dim} is not divisible by num_groups {num_groups}")
        self.num_groups = num_groups
        self.num_entries = num_entries
        self.codevectors = nn.Parameter(torch.empty(1, num_groups * num_entries, codebook_dim // num_groups).uniform_())
        self.weight_proj = nn.Linear(input_dim, num_groups * num_entries)
        nn.init.normal_(self.weight_proj.weight, mean=0.0, std=1.0)
        nn.init.zeros_(self.weight_proj.bias)

    def forward(self, x: Tensor, temperature: float, generator: torch.Generator | None = None) -> QuantizerOutput:
        """Quantize ``x`` ``(N, input_dim)``.

        Args:
            temperature: the Gumbel softmax temperature (training only).
            generator: draws the Gumbel noise in training mode (required there).
        """
        logits = self.weight_proj(x).float().view(-1, self.num_groups, self.num_entries)  # (N, G, V)
        codes = logits.argmax(-1)  # (N, G)
        hard = nn.functional.one_hot(codes, self.num_entries).to(logits.dtype)
        with torch.no_grad():
            code_perplexity = perplexity(hard.mean(0))
        prob_perplexity = perplexity(logits.softmax(-1).mean(0))
        if self.training:
            if generator is None:
                raise ValueError("the quantizer draws Gumbel noise in training mode: pass a generator")
            noise = torch.empty(logits.shape, device=generator.device).exponential_(generator=generator)
            soft = ((logits - noise.to(logits.device).log()) / temperature).softmax(-1)  # -log(E) ~ Gumbel(0, 1)
            codes = soft.argmax(-1)
            hard = nn.functional.one_hot(codes, self.num_entries).to(soft.dtype)
            choice = hard - soft.detach() + soft
        else:
            choice = hard
        entries = self.codevectors.view(self.num_groups, self.num_entries, -1)  # (G, V, D / G)
        vectors = torch.einsum("ngv,gvd->ngd", choice.to(entries.dtype), entries).reshape(choice.shape[0], -1)
        return QuantizerOutput(vectors.type_as(x), codes, code_perplexity, prob_perplexity)


def annealed_temperature(num_updates: int, max_temperature: float, min_temperature: float, decay: float) -> float:
    """The Gumbel temperature at update ``num_updates``: ``max(max_temperature * decay ** n, min_temperature)``
    (fairseq ``latent_temp``)."""
    return max(max_temperature * decay ** num_updates, min_temperature)
