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


class ResidualVectorQuantizer(nn.Module):
    """K codebooks of V entries applied in turn, each to what the previous ones left (SoundStream and
    EnCodec's residual VQ); a vector's codes are its K entry ids.

    Entries follow exponential moving averages of the vectors assigned to them (VQ-VAE-2's codebook
    update) rather than gradients; an entry whose average count falls below ``dead_threshold`` is
    restarted at a random residual of the batch, and the codebooks start from random residuals of the
    first training batch, each drawn from the caller's generator. Gradients reach the encoder by the
    straight-through estimator; the commitment loss pulls the encoder towards its codes.

    Args:
        num_codebooks: ``K``; codebook_size: ``V``; dim: ``D``.
        decay: of the moving averages (0.99, as EnCodec).
        dead_threshold: moving average of an entry's assignments per batch below which it is restarted.
    """

    def __init__(self, num_codebooks: int, codebook_size: int, dim: int, decay: float = 0.99,
                 dead_threshold: float = 0.1) -> None:
        super().__init__()
        self.decay = decay
        self.dead_threshold = dead_threshold
        self.register_buffer("codebooks", torch.zeros(num_codebooks, codebook_size, dim))
        self.register_buffer("counts", torch.ones(num_codebooks, codebook_size))
        self.register_buffer("sums", torch.zeros(num_codebooks, codebook_size, dim))
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))

    @property
    def num_codebooks(self) -> int:
        return self.codebooks.shape[0]

    @property
    def codebook_size(self) -> int:
        return self.codebooks.shape[1]

    def _random_rows(self, x: Tensor, count: int, generator: torch.Generator | None) -> Tensor:
        return x[torch.randint(0, x.shape[0], (count,), generator=generator, device=x.device)]

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """``(N, D)`` vectors → quantized ``(N, D)`` (straight-through), codes ``(N, K)`` long and the
        commitment loss (mean squared distance of ``x`` to its quantization). Training mode updates the codebooks."""
        residual = x.detach()
        quantized = torch.zeros_like(residual)
        codes = []
        for k in range(self.num_codebooks):
            if self.training and not bool(self.initialized):
                self.codebooks[k] = self._random_rows(residual, self.codebook_size, generator)
                self.sums[k] = self.codebooks[k]
            ids = torch.cdist(residual, self.codebooks[k]).argmin(dim=1)
            chosen = self.codebooks[k][ids]
            if self.training:
                self._update(k, residual, ids, generator)
            codes.append(ids)
            quantized = quantized + chosen
            residual = residual - chosen
        if self.training:
            self.initialized.fill_(True)
        commitment = nn.functional.mse_loss(x, quantized)
        return x + (quantized - x).detach(), torch.stack(codes, dim=1), commitment

    @torch.no_grad()
    def _update(self, k: int, residual: Tensor, ids: Tensor, generator: torch.Generator | None) -> None:
        onehot = nn.functional.one_hot(ids, self.codebook_size).to(residual.dtype)
        self.counts[k].mul_(self.decay).add_(onehot.sum(0), alpha=1 - self.decay)
        self.sums[k].mul_(self.decay).add_(onehot.t() @ residual, alpha=1 - self.decay)
        self.codebooks[k] = self.sums[k] / self.counts[k].clamp(min=1e-5)[:, None]
        dead = self.counts[k] < self.dead_threshold
        if bool(dead.any()):
            restart = self._random_rows(residual, int(dead.sum()), generator)
            self.codebooks[k][dead] = restart
            self.sums[k][dead] = restart
            self.counts[k][dead] = 1.0
