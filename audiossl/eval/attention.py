"""How far the attention heads of a transformer encoder look, measured on real utterances.

A head that spreads its weight evenly over an utterance (normalised entropy near 1, a mean
distance of about a third of the utterance) only averages; a head that has learned to use
context looks a few frames away. Freshly initialised encoders are all of the first kind, and
a briefly pretrained one can stay that way (see ``egs/mini_tts/asr/RESULTS.md``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from audiossl.models.encoder import SpeechEncoder


@dataclass
class AttentionStatistics:
    """Per layer and head, averaged over valid query frames of all utterances.

    Attributes:
        entropy: ``(L, H)`` attention entropy divided by ``log(valid frames)`` (1: uniform).
        distance: ``(L, H)`` expected ``|query - key|`` in frames.
        uniform_distance: the expected distance of uniform attention over the same utterances.
        frames: valid query frames measured.
    """

    entropy: Tensor
    distance: Tensor
    uniform_distance: float
    frames: int


@torch.no_grad()
def attention_statistics(model: SpeechEncoder, batches) -> AttentionStatistics:
    """Attention entropy and distance of every head of ``model`` (in eval mode; no masking).

    Args:
        model: a pretraining or fine-tuned model with attention layers (its ``attention_weights``).
        batches: iterable of ``(inputs, lengths)`` of the model's input kind.
    """
    entropy = distance = None
    uniform, frames = 0.0, 0
    for inputs, lengths in batches:
        layer_weights, frame_lengths = model.attention_weights(inputs, lengths)  # each (B, H, T, T)
        if entropy is None:
            entropy = torch.zeros(len(layer_weights), layer_weights[0].shape[1])
            distance = torch.zeros_like(entropy)
        time = layer_weights[0].shape[-1]
        positions = torch.arange(time, device=frame_lengths.device)
        padding = positions[None, :] >= frame_lengths[:, None]
        valid = (~padding).float()  # (B, T)
        gap = (positions[None, :] - positions[:, None]).abs().float()  # (T, T)
        log_len = frame_lengths.clamp(min=2).float().log()  # (B,)
        for index, weights in enumerate(layer_weights):
            plogp = torch.where(weights > 0, weights * weights.clamp_min(1e-30).log(), 0.0)
            ent = -plogp.sum(-1) / log_len[:, None, None]  # (B, H, T)
            entropy[index] += (ent * valid[:, None]).sum((0, 2)).cpu()
            distance[index] += ((weights * gap).sum(-1) * valid[:, None]).sum((0, 2)).cpu()
        for n in frame_lengths.tolist():  # uniform attention: mean |i - j| over an n x n grid
            uniform += (n * n - 1) / 3.0
        frames += int(frame_lengths.sum())
    if not frames:
        raise ValueError("no frames to measure")
    return AttentionStatistics(entropy / frames, distance / frames, uniform / frames, frames)


def format_statistics(name: str, stats: AttentionStatistics) -> str:
    """A plain-text table: one row per layer, the mean and the most local head."""
    lines = [f"{name}: {stats.frames} frames; uniform attention would look {stats.uniform_distance:.1f} frames away",
             "layer  entropy (mean, min head)  distance in frames (mean, min head)"]
    for index, (ent, dist) in enumerate(zip(stats.entropy, stats.distance), start=1):
        lines.append(f"{index:5d}  {float(ent.mean()):7.2f} {float(ent.min()):7.2f}"
                     f"              {float(dist.mean()):7.1f} {float(dist.min()):7.1f}")
    return "\n".join(lines)


def plot_distances(named_stats: dict[str, AttentionStatistics], path) -> None:
    """One panel per model: each head's mean attention distance per layer, against uniform."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(named_stats), figsize=(4 * len(named_stats), 3.2), sharey=True, squeeze=False)
    for ax, (name, stats) in zip(axes[0], named_stats.items()):
        layers = range(1, stats.distance.shape[0] + 1)
        for head in range(stats.distance.shape[1]):
            ax.plot(layers, stats.distance[:, head], marker="o", label=f"head {head + 1}")
        ax.axhline(stats.uniform_distance, color="grey", linestyle="--", label="uniform")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("layer")
        ax.set_ylim(0, 1.15 * max(stats.uniform_distance, float(stats.distance.max())))
    axes[0][0].set_ylabel("mean attention distance (frames)")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
