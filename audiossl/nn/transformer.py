"""Transformer encoder parts (wav2vec 2.0 / HuBERT), assembled by the family factories.

Every module here receives built parts or plain sizes, never a config. Padding masks are
``(B, T)`` bool with True at padded frames. The attention and the layers are pluggable:
an attention is any module ``attention(x (B,T,D), padding_mask, position_bias) -> (B,T,D)``
with a ``dim`` attribute, and a layer is any module ``layer(x, padding_mask, position_bias) -> x``.
A position bias (ALiBi, WavLM's bucketed relative bias) is one ``(H, T, T)`` tensor that the
encoder computes once per forward and hands to every layer; an attention may gate it per query
(:class:`PositionBiasGate`, WavLM). Chunkwise attention (streaming) is a ``(T, T)`` bool mask
handed to every layer the same way (:func:`chunk_mask`, :class:`DynamicChunks`).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm

from audiossl.nn.conv import wide_grouped_conv1d


class ConvPositionalEmbedding(nn.Module):
    """Convolutional relative positional embedding (fairseq ``pos_conv``).

    Weight-normalised (over dim 2, as fairseq) grouped Conv1d with "same" padding (the
    extra frame of an even kernel is dropped, fairseq ``SamePad``), then GELU. Padded frames
    are zeroed before the convolution so they cannot leak into valid ones. Weights start
    N(0, sqrt(4 / (kernel_size * dim))) (fairseq also scales the 4 by ``1 - dropout``).

    Args:
        dim: model dimension ``D`` (fairseq ``encoder_embed_dim``).
        kernel_size: fairseq ``conv_pos`` (128).
        groups: fairseq ``conv_pos_groups`` (16).
    """

    def __init__(self, dim: int, kernel_size: int, groups: int) -> None:
        super().__init__()
        conv = nn.Conv1d(dim, dim, kernel_size, padding=kernel_size // 2, groups=groups)
        nn.init.normal_(conv.weight, mean=0.0, std=math.sqrt(4.0 / (kernel_size * dim)))
        nn.init.zeros_(conv.bias)
        self.conv = weight_norm(conv, name="weight", dim=2)
        self.trim = 1 if kernel_size % 2 == 0 else 0

    def forward(self, x: Tensor, padding_mask: Tensor, chunk: int | None = None) -> Tensor:
        """x ``(B, T, D)`` → positional embedding ``(B, T, D)`` (to be added to x). With ``chunk``
        frames, each chunk of the sequence is convolved on its own (zero outside it), so that no
        frame sees a later chunk (chunkwise attention)."""
        batch, time, dim = x.shape
        x = x.masked_fill(padding_mask[..., None], 0.0)
        if chunk is not None:  # (B, T, D) → (B * chunks, chunk, D), the last chunk zero-padded
            x = nn.functional.pad(x, (0, 0, 0, -time % chunk)).reshape(-1, chunk, dim)
        conv = self.conv
        x = wide_grouped_conv1d(x.transpose(1, 2), conv.weight, conv.bias, conv.padding[0], conv.groups)
        if self.trim:
            x = x[..., : -self.trim]
        x = nn.functional.gelu(x).transpose(1, 2)
        return x.reshape(batch, -1, dim)[:, :time] if chunk is not None else x


class FeedForward(nn.Module):
    """Linear → GELU → Dropout → Linear → Dropout.

    Args:
        dim: fairseq ``encoder_embed_dim``.
        ffn_dim: fairseq ``encoder_ffn_embed_dim``.
        activation_dropout: fairseq ``activation_dropout`` (after GELU).
        dropout: fairseq ``dropout`` (on the output).
    """

    def __init__(self, dim: int, ffn_dim: int, activation_dropout: float, dropout: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, ffn_dim)
        self.fc2 = nn.Linear(ffn_dim, dim)
        self.activation_dropout = nn.Dropout(activation_dropout)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, T, D)`` → ``(B, T, D)``."""
        return self.dropout(self.fc2(self.activation_dropout(nn.functional.gelu(self.fc1(x)))))


class AlibiPositionBias(nn.Module):
    """Symmetric ALiBi (Press et al., 2022): head ``h`` adds ``-slope_h * |i - j|`` to its logits.

    Slopes form the geometric sequence ``2^(-8 (h + 1) / H)`` (ALiBi's slopes when ``H`` is a
    power of two; for other ``H`` ALiBi interleaves a second sequence, this does not), so some
    heads attend within a few frames from the first update and others almost globally. No
    parameters: one instance can serve every layer. fairseq and HF HuBERT have no equivalent
    (they use only the convolutional positional embedding).

    Args:
        num_heads: attention heads ``H``.
    """

    def __init__(self, num_heads: int) -> None:
        super().__init__()
        exponents = torch.arange(1, num_heads + 1, dtype=torch.float32) * (-8.0 / num_heads)
        self.register_buffer("slopes", torch.pow(2.0, exponents), persistent=False)

    def forward(self, time: int) -> Tensor:
        """``(H, T, T)`` additive attention bias for ``T`` frames (fp32, on the slopes' device)."""
        positions = torch.arange(time, device=self.slopes.device, dtype=torch.float32)
        distance = (positions[None, :] - positions[:, None]).abs()
        return -self.slopes[:, None, None] * distance


def relative_position_buckets(relative: Tensor, num_buckets: int, max_distance: int) -> Tensor:
    """Bucket of each relative distance ``key - query`` (T5's scheme, bidirectional, as WavLM).

    Half the buckets serve positive distances, half the others. Within a half, distances below
    ``num_buckets // 4`` get a bucket each; larger ones share buckets spaced logarithmically up
    to ``max_distance``, beyond which all fall in the last bucket.

    Args:
        relative: long tensor of relative positions, any shape.

    Returns:
        Long bucket ids in ``[0, num_buckets)``, same shape.
    """
    half = num_buckets // 2
    buckets = (relative > 0).long() * half
    distance = relative.abs()
    max_exact = half // 2
    log_ratio = torch.log(distance.float().clamp(min=1) / max_exact) / math.log(max_distance / max_exact)
    far = (max_exact + log_ratio * (half - max_exact)).long().clamp(max=half - 1)
    return buckets + torch.where(distance < max_exact, distance, far)


class RelativePositionBias(nn.Module):
    """WavLM's learned relative position bias: one value per head and distance bucket.

    Args:
        num_heads: attention heads ``H``.
        num_buckets: distance buckets (WavLM: 320).
        max_distance: distances beyond this share the last bucket (WavLM: 800).
    """

    def __init__(self, num_heads: int, num_buckets: int, max_distance: int) -> None:
        super().__init__()
        self.num_buckets = num_buckets
        self.max_distance = max_distance
        self.embedding = nn.Embedding(num_buckets, num_heads)

    def forward(self, time: int) -> Tensor:
        """``(H, T, T)`` additive attention bias for ``T`` frames (query along dim 1, key along dim 2)."""
        positions = torch.arange(time, device=self.embedding.weight.device)
        buckets = relative_position_buckets(positions[None, :] - positions[:, None], self.num_buckets,
                                            self.max_distance)
        return self.embedding(buckets).permute(2, 0, 1)


class PositionBiasGate(nn.Module):
    """WavLM's gate: each query scales the relative position bias by its own content.

    For head ``h`` and query frame ``i``, the head's slice ``x_i^h`` of the attention input gives
    ``a, b = sigmoid(sum of 4 of W x_i^h + c)`` (two gates, each a sum of four projections) and
    the bias row ``i`` is scaled by ``a (b const_h - 1) + 2`` (``const_h`` learned, 1 at first).

    Args:
        num_heads: attention heads ``H``.
        head_dim: ``D / H``.
    """

    def __init__(self, num_heads: int, head_dim: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.linear = nn.Linear(head_dim, 8)
        self.const = nn.Parameter(torch.ones(1, num_heads, 1, 1))

    def forward(self, x: Tensor, bias: Tensor) -> Tensor:
        """x ``(B, T, D)`` attention input, bias ``(H, T, T)`` → gated bias ``(B, H, T, T)``."""
        heads = x.view(x.shape[0], x.shape[1], self.num_heads, -1).transpose(1, 2)  # (B, H, T, D / H)
        gates = torch.sigmoid(self.linear(heads).view(*heads.shape[:-1], 2, 4).sum(-1))
        gate_a, gate_b = gates.unbind(-1)  # (B, H, T) each
        scale = gate_a * (gate_b * self.const[..., 0] - 1.0) + 2.0
        return scale[..., None] * bias


class SelfAttention(nn.Module):
    """Multi-head self-attention with a key padding mask, via ``scaled_dot_product_attention``.

    Args:
        dim: fairseq ``encoder_embed_dim``.
        num_heads: fairseq ``encoder_attention_heads``.
        dropout: fairseq ``attention_dropout`` (on the attention weights, training only).
        gate: a :class:`PositionBiasGate` that scales the position bias per query (WavLM), or None
            (the bias, if any, is added as it is).
    """

    def __init__(self, dim: int, num_heads: int, dropout: float, gate: PositionBiasGate | None = None) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.dim = dim
        self.num_heads = num_heads
        self.dropout = dropout
        self.gate = gate
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def _heads(self, t: Tensor) -> Tensor:
        """``(B, T, D)`` → ``(B, H, T, D / H)``."""
        return t.view(t.shape[0], t.shape[1], self.num_heads, -1).transpose(1, 2)

    def _bias(self, x: Tensor, position_bias: Tensor | None) -> Tensor | None:
        """The ``(B or 1, H, T, T)`` bias added to the logits (gated per query when there is a gate)."""
        if position_bias is None:
            return None
        return position_bias[None] if self.gate is None else self.gate(x, position_bias)

    def forward(self, x: Tensor, padding_mask: Tensor, position_bias: Tensor | None = None,
                chunks: Tensor | None = None) -> Tensor:
        """x ``(B, T, D)``, padding_mask ``(B, T)``, position_bias ``(H, T, T)`` or None, chunks ``(T, T)``
        bool (True where a query may see a key) or None → ``(B, T, D)``; padded keys get no weight."""
        batch, time, _ = x.shape
        q, k, v = self._heads(self.q_proj(x)), self._heads(self.k_proj(x)), self._heads(self.v_proj(x))
        attend = ~padding_mask[:, None, None, :]
        if chunks is not None:
            attend = attend & chunks
        bias = self._bias(x, None if position_bias is None else position_bias.to(q.dtype))
        dropout = self.dropout if self.training else 0.0
        if bias is None:
            out = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=attend, dropout_p=dropout)
        elif x.device.type == "cpu" and bias.requires_grad:
            # the CPU's fused kernel gives no float mask a gradient: SDPA would fall back to
            # its slower unfused path, so the same products are written out (softmax in fp32 at least)
            logits = _biased_logits(q, k, bias, attend)
            weights = logits.softmax(-1, dtype=torch.promote_types(logits.dtype, torch.float32)).to(v.dtype)
            out = nn.functional.dropout(weights, dropout, self.training) @ v
        else:  # a float mask: the bias, -inf at padded keys
            attend = bias.to(q.dtype).masked_fill(~attend, float("-inf"))
            out = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=attend, dropout_p=dropout)
        return self.out_proj(out.transpose(1, 2).reshape(batch, time, self.dim))

    def attention_weights(self, x: Tensor, padding_mask: Tensor, position_bias: Tensor | None = None) -> Tensor:
        """The ``(B, H, T, T)`` attention weights :meth:`forward` applies (no dropout), computed
        explicitly: softmax of ``q k^T / sqrt(d)`` plus the position bias, zero at padded keys."""
        q, k = self._heads(self.q_proj(x)), self._heads(self.k_proj(x))
        bias = self._bias(x, position_bias)
        if bias is None:
            bias = q.new_zeros(1, 1, 1, 1)
        return _biased_logits(q, k, bias.to(q.dtype), ~padding_mask[:, None, None, :]).softmax(-1)


def _biased_logits(q: Tensor, k: Tensor, bias: Tensor, attend: Tensor) -> Tensor:
    """Attention logits ``q k^T / sqrt(d) + bias``, ``-inf`` where a query may not see a key.

    Args:
        q, k: ``(B, H, T, d)``.
        bias: broadcastable to ``(B, H, T, T)``.
        attend: bool, broadcastable to ``(B, H, T, T)``, True where a query may see a key.
    Returns:
        ``(B, H, T, T)``: one batched product added to the masked bias.
    """
    batch, heads, time, dim = q.shape
    masked = bias.expand(batch, heads, time, time).masked_fill(~attend, float("-inf"))
    logits = torch.baddbmm(masked.reshape(batch * heads, time, time), q.reshape(batch * heads, time, dim),
                           k.reshape(batch * heads, time, dim).transpose(1, 2), alpha=dim**-0.5)
    return logits.view(batch, heads, time, time)


class EncoderLayer(nn.Module):
    """Attention and feed-forward blocks with residuals, post-norm or pre-norm.

    Post-norm (fairseq ``layer_norm_first=False``, BASE)::

        x = LN(x + Dropout(Attn(x)));  x = LN(x + FFN(x))

    Pre-norm (``layer_norm_first=True``, LARGE)::

        x = x + Dropout(Attn(LN(x)));  x = x + FFN(LN(x))

    Args:
        attention: the attention part; its ``dim`` sizes the layer norms.
        feed_forward: the :class:`FeedForward` part (output dropout included).
        dropout: fairseq ``dropout``, applied to the attention output.
        layer_norm_first: fairseq ``layer_norm_first``.
    """

    def __init__(self, attention: nn.Module, feed_forward: nn.Module, dropout: float, layer_norm_first: bool) -> None:
        super().__init__()
        self.attention = attention
        self.feed_forward = feed_forward
        self.dropout = nn.Dropout(dropout)
        self.layer_norm_first = layer_norm_first
        self.attention_layer_norm = nn.LayerNorm(attention.dim)
        self.final_layer_norm = nn.LayerNorm(attention.dim)

    def attention_weights(self, x: Tensor, padding_mask: Tensor, position_bias: Tensor | None = None) -> Tensor:
        """``(B, H, T, T)`` weights of this layer's attention for layer input ``x`` (``(B, T, D)``)."""
        return self.attention.attention_weights(self.attention_layer_norm(x) if self.layer_norm_first else x,
                                                padding_mask, position_bias)

    def forward(self, x: Tensor, padding_mask: Tensor, position_bias: Tensor | None = None,
                chunks: Tensor | None = None) -> Tensor:
        """x ``(B, T, D)``, padding_mask ``(B, T)``, position_bias ``(H, T, T)`` or None, chunks ``(T, T)``
        bool or None (see :class:`SelfAttention`) → ``(B, T, D)``."""
        if self.layer_norm_first:
            x = x + self.dropout(self.attention(self.attention_layer_norm(x), padding_mask, position_bias, chunks))
            return x + self.feed_forward(self.final_layer_norm(x))
        x = self.attention_layer_norm(x + self.dropout(self.attention(x, padding_mask, position_bias, chunks)))
        return self.final_layer_norm(x + self.feed_forward(x))


class TransformerEncoder(nn.Module):
    """Positional embedding, then a stack of layers; returns every hidden state.

    Args:
        pos_embedding: e.g. :class:`ConvPositionalEmbedding`; ``pos_embedding(x, padding_mask)``
            is added to the input.
        layers: the layer stack, each ``layer(x, padding_mask, position_bias) -> x``.
        layer_norm: the encoder layer norm (fairseq ``encoder.layer_norm``): applied to the
            encoder input in post-norm mode, to the last layer's output in pre-norm mode.
        layer_norm_first: fairseq ``layer_norm_first``.
        dropout: fairseq ``dropout``, applied to the encoder input.
        layer_drop: fairseq ``encoder_layerdrop``: each layer is skipped with this
            probability, only in training and only when :meth:`forward` gets a generator
            (the draws come from it); without one every layer runs.
        position_bias: ``position_bias(T) -> (H, T, T)`` attention bias computed once per forward
            and given to every layer (:class:`AlibiPositionBias`, :class:`RelativePositionBias`), or None.
        chunks: chunk sizes drawn per training batch (:class:`DynamicChunks`), or None: full context.

    Attributes:
        chunk_frames: a fixed attention chunk (frames) for every forward, training and inference alike
            (streaming fine-tuning and decoding), or None (the default): full context, or in training
            with ``chunks`` a drawn one.
    """

    def __init__(
        self,
        pos_embedding: nn.Module,
        layers: Sequence[nn.Module],
        layer_norm: nn.Module,
        layer_norm_first: bool,
        dropout: float,
        layer_drop: float,
        position_bias: nn.Module | None = None,
        chunks: DynamicChunks | None = None,
    ) -> None:
        super().__init__()
        self.pos_embedding = pos_embedding
        self.chunks = chunks
        self.chunk_frames: int | None = None
        self.position_bias = position_bias
        self.layers = nn.ModuleList(layers)
        self.layer_norm = layer_norm
        self.layer_norm_first = layer_norm_first
        self.dropout = nn.Dropout(dropout)
        self.layer_drop = layer_drop

    def forward(self, x: Tensor, padding_mask: Tensor, generator: torch.Generator | None = None,
                num_layers: int | None = None) -> list[Tensor]:
        """Run the stack.

        Args:
            x: ``(B, T, D)`` encoder input.
            padding_mask: ``(B, T)`` bool, True at padded frames.
            generator: draws the layer-drop decisions; ``None`` disables layer drop.
            num_layers: run only the first this many layers (their hidden states are those of
                the whole stack; no final layer norm unless every layer runs). None: all.

        Returns:
            ``num_layers + 1`` tensors ``(B, T, D)``. Index 0 is the input to the first layer:
            ``x + pos_embedding(x)``, then (post-norm only) the layer norm, then dropout.
            Index ``i`` is layer ``i``'s output; a dropped layer repeats its input, so the
            indices never shift. In pre-norm mode the last entry has the final layer norm
            applied (fairseq's returned ``x``; HF's last ``hidden_states``).
        """
        chunk = self.chunk_frames
        if chunk is None and self.chunks is not None and self.training and generator is not None:
            chunk = self.chunks.draw(generator)
        x = x.masked_fill(padding_mask[..., None], 0.0)
        x = x + self.pos_embedding(x, padding_mask, chunk)
        if not self.layer_norm_first:
            x = self.layer_norm(x)
        x = self.dropout(x)
        drop = draw_layer_drop(len(self.layers), self.layer_drop, self.training, generator)
        layers = self.layers if num_layers is None else self.layers[:num_layers]
        bias = self.attention_bias(x.shape[1])
        chunks = None if chunk is None else chunk_mask(x.shape[1], chunk, x.device)
        hidden_states = [x]
        for layer, skip in zip(layers, drop):
            if not skip:
                x = layer(x, padding_mask, bias, chunks)
            hidden_states.append(x)
        if self.layer_norm_first and len(layers) == len(self.layers):
            hidden_states[-1] = self.layer_norm(x)
        return hidden_states

    def attention_bias(self, time: int) -> Tensor | None:
        """The ``(H, T, T)`` position bias every layer's attention gets for ``T`` frames (None without one)."""
        return None if self.position_bias is None else self.position_bias(time)

class DynamicChunks:
    """Attention chunk sizes drawn per training batch (dynamic chunk training, as WeNet; GigaAM's
    chunkwise attention), so that one model serves full context and streaming.

    Args:
        min_frames, max_frames: a drawn chunk has ``min_frames`` to ``max_frames`` frames, uniformly.
        full_context_prob: probability of a batch with full context instead.
    """

    def __init__(self, min_frames: int, max_frames: int, full_context_prob: float) -> None:
        self.min_frames, self.max_frames, self.full_context_prob = min_frames, max_frames, full_context_prob

    def draw(self, generator: torch.Generator) -> int | None:
        """A chunk size in frames, or None for full context, from ``generator``."""
        if float(torch.rand((), generator=generator, device=generator.device)) < self.full_context_prob:
            return None
        return int(torch.randint(self.min_frames, self.max_frames + 1, (), generator=generator, device=generator.device))


def chunk_mask(time: int, chunk: int, device: torch.device | None = None) -> Tensor:
    """``(T, T)`` bool, True where query frame i may attend key frame j: j's chunk of ``chunk`` frames
    is i's or an earlier one (full left context, no look-ahead past the chunk's end)."""
    index = torch.arange(time, device=device) // chunk
    return index[None, :] <= index[:, None]


def draw_layer_drop(num_layers: int, layer_drop: float, training: bool, generator: torch.Generator | None) -> list[bool]:
    """Which of ``num_layers`` layers to skip (fairseq ``encoder_layerdrop``): each with probability
    ``layer_drop``, drawn from ``generator``, in training only; none without a generator."""
    if not training or layer_drop <= 0.0 or generator is None:
        return [False] * num_layers
    draws = torch.rand(num_layers, generator=generator, device=generator.device)
    return (draws < layer_drop).tolist()


def init_bert_params(module: nn.Module) -> None:
    """fairseq ``init_bert_params`` for ``module.apply``: Linear and Embedding weights ~ N(0, 0.02), biases 0."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
