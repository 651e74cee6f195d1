"""torchaudio's :class:`torchaudio.models.Wav2Vec2Model` (wav2vec 2.0, HuBERT and WavLM, as its factories
``wav2vec2_model`` / ``wavlm_model`` and the named ones such as ``hubert_base`` build them; UniSpeech-SAT's
encoder is ``wav2vec2_model``'s) to and from audiossl models, and the state dict files of torchaudio's pipeline bundles.

torchaudio's layout is Hugging Face's under other prefixes (``encoder.transformer.`` for HF's
``encoder.``, ``encoder.feature_projection.`` for ``feature_projection.``) with WavLM's query, key and
value projections fused into one ``nn.MultiheadAttention`` ``in_proj``; the conversion goes through the
families' Hugging Face converters (:data:`audiossl.interop.huggingface.HF_FAMILIES`). torchaudio has no
mask embedding, quantizer or prediction head: they are new on import and left out on export; a CTC
head (``aux``) is dropped.

``extract_features`` of torchaudio returns each layer's output; audiossl's hidden states start with the
encoder input, so torchaudio's ``i``-th output is audiossl's ``i + 1``-th, except that in pre-norm models
audiossl's last one has the final layer norm (torchaudio's ``forward`` output). torchaudio's WavLM
takes no ``lengths`` (padded batches fail its attention's assertion).
"""
from __future__ import annotations

import os
from typing import Any

import torch
import torchaudio
from torch import Tensor, nn
from torchaudio.models.wav2vec2.wavlm_attention import WavLMSelfAttention

from audiossl.checkpoint import load_failure, unfit_weights
from audiossl.errors import InteropError
from audiossl.interop.huggingface import HF_FAMILIES
from audiossl.models.encoder import SpeechEncoder
from audiossl.registry import get_family

BUNDLE_SIZES: dict[str, tuple[str, ...]] = {
    "wav2vec2": ("base", "large", "large_lv60k", "xlsr_300m", "xlsr_1b", "xlsr_2b"),
    "hubert": ("base", "large", "xlarge"),
    "wavlm": ("base", "large"),
}
"""family → the sizes of torchaudio's named factories (``torchaudio.models.<family>_<size>``); a bundle's
state dict fits its family's factory of the same size (``WAVLM_BASE_PLUS``: ``base``, ``WAV2VEC2_XLSR53``:
``large_lv60k``)."""
# (torchaudio prefix, Hugging Face prefix): the first matching prefix wins
_PREFIXES = (("encoder.feature_projection.", "feature_projection."), ("encoder.transformer.", "encoder."),
             ("feature_extractor.", "feature_extractor."))
_LEGACY_WEIGHT_NORM = (("weight_g", "parametrizations.weight.original0"),
                       ("weight_v", "parametrizations.weight.original1"))


def _hf_config(model: torchaudio.models.Wav2Vec2Model) -> dict[str, Any]:
    """The Hugging Face config dict of a torchaudio model, read from its modules."""
    convs = [block.conv for block in model.feature_extractor.conv_layers]
    transformer = model.encoder.transformer
    layer = transformer.layers[0]
    attention = layer.attention
    config = {
        "conv_dim": [conv.out_channels for conv in convs], "conv_kernel": [conv.kernel_size[0] for conv in convs],
        "conv_stride": [conv.stride[0] for conv in convs], "conv_bias": convs[0].bias is not None,
        "feat_extract_norm": ("group" if isinstance(model.feature_extractor.conv_layers[0].layer_norm, nn.GroupNorm)
                              else "layer"),
        "feat_proj_dropout": model.encoder.feature_projection.dropout.p,
        "hidden_size": transformer.pos_conv_embed.embed_dim, "num_hidden_layers": len(transformer.layers),
        "num_attention_heads": attention.num_heads,
        "intermediate_size": layer.feed_forward.intermediate_dense.out_features,
        "hidden_dropout": transformer.dropout.p, "attention_dropout": attention.dropout,
        "activation_dropout": layer.feed_forward.intermediate_dropout.p, "layerdrop": transformer.layer_drop,
        "do_stable_layer_norm": layer.layer_norm_first,
        "num_conv_pos_embeddings": transformer.pos_conv_embed.kernel_size,
        "num_conv_pos_embedding_groups": transformer.pos_conv_embed.conv.groups,
    }
    if isinstance(attention, WavLMSelfAttention):
        if not attention.gru_rel_pos:
            raise InteropError("torchaudio WavLM without gated relative position bias has no audiossl equivalent")
        config |= {"num_buckets": attention.num_buckets, "max_bucket_distance": attention.max_distance}
    return config


def _hf_state(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """A torchaudio state dict in Hugging Face names (WavLM's fused projections split, the CTC head dropped)."""
    hf = {}
    for name, tensor in state.items():
        prefix = next((pair for pair in _PREFIXES if name.startswith(pair[0])), None)
        if prefix is None:
            if name.startswith("aux."):
                continue
            raise InteropError(f"torchaudio weight with no equivalent: {name}")
        name = prefix[1] + name.removeprefix(prefix[0])
        for legacy, current in _LEGACY_WEIGHT_NORM:  # bundle files keep nn.utils.weight_norm's names
            name = name.replace(f"pos_conv_embed.conv.{legacy}", f"pos_conv_embed.conv.{current}")
        if ".attention.attention.in_proj_" in name:
            for part, chunk in zip("qkv", tensor.chunk(3)):
                hf[name.replace("attention.attention.in_proj_", f"attention.{part}_proj.")] = chunk
        else:
            hf[name.replace(".attention.attention.out_proj.", ".attention.out_proj.")] = tensor
    return hf


def _torchaudio_state(hf: dict[str, Tensor], wavlm: bool) -> dict[str, Tensor]:
    """A Hugging Face base-model state dict in torchaudio names (WavLM's projections fused)."""
    state = {}
    for name, tensor in hf.items():
        for torchaudio_prefix, hf_prefix in _PREFIXES:
            if name.startswith(hf_prefix):
                state[torchaudio_prefix + name.removeprefix(hf_prefix)] = tensor
                break
    if wavlm:
        for name in [name for name in state if ".attention.q_proj." in name]:
            fused = name.replace("attention.q_proj.", "attention.attention.in_proj_")
            state[fused] = torch.cat([state.pop(name.replace("q_proj", f"{part}_proj")) for part in "qkv"])
        for name in [name for name in state if ".attention.out_proj." in name]:
            state[name.replace(".attention.out_proj.", ".attention.attention.out_proj.")] = state.pop(name)
    return state


def _from_parts(architecture: torchaudio.models.Wav2Vec2Model, state: dict[str, Tensor], family: str,
                num_classes: int, source: str) -> SpeechEncoder:
    """The audiossl model of ``family`` with ``architecture``'s config and the torchaudio weights ``state``."""
    if family not in HF_FAMILIES:
        raise InteropError(f"torchaudio's Wav2Vec2Model converts to {', '.join(HF_FAMILIES)}, not {family!r}")
    is_wavlm = isinstance(architecture.encoder.transformer.layers[0].attention, WavLMSelfAttention)
    if is_wavlm != (family == "wavlm"):
        raise InteropError(f"{source}: a torchaudio {'WavLM' if is_wavlm else 'wav2vec 2.0 / HuBERT'} "
                           f"model is not a {family!r} model")
    entry = HF_FAMILIES[family]
    try:
        model = get_family(family).build(entry.config_from_hf(_hf_config(architecture), num_classes))
        weights = entry.state_dict_from_hf(_hf_state(state))
    except InteropError as err:
        raise InteropError(f"{source}: {err}") from None
    unfit = unfit_weights(model.state_dict(), weights, ("mask_embedding",) + entry.pretraining_parts)
    if unfit:
        raise InteropError(f"{source}: weights do not fit the architecture: {unfit} (audiossl names)")
    model.load_state_dict(weights, strict=False)
    return model.eval()


def from_torchaudio(model: torchaudio.models.Wav2Vec2Model, family: str, num_classes: int = 100) -> SpeechEncoder:
    """The audiossl model (eval mode) of a torchaudio ``Wav2Vec2Model`` of ``family`` (``"wav2vec2"``,
    ``"hubert"`` or ``"wavlm"``: torchaudio's class does not say which).

    ``extract_features(wavs (B, S), lengths (B,))[0][1:]`` equals torchaudio's ``extract_features``
    (see the module notes for the last layer of pre-norm models). The mask embedding, the quantizer
    and the HuBERT/WavLM head (``num_classes`` targets) are new.
    """
    return _from_parts(model, model.state_dict(), family, num_classes, "torchaudio model")


def load_torchaudio_state_dict(path: str | os.PathLike, family: str, size: str,
                               num_classes: int = 100) -> SpeechEncoder:
    """The audiossl model (eval mode) of a torchaudio state dict file (a bundle's ``.pth``, loaded
    weights-only) whose architecture is ``torchaudio.models.<family>_<size>()`` (:data:`BUNDLE_SIZES`).

    Bundles of large models standardise each waveform before the model (``_normalize_waveform``):
    do the same before ``extract_features``.
    """
    if size not in BUNDLE_SIZES.get(family, ()):
        raise InteropError(f"no torchaudio factory {family}_{size}; sizes: "
                           + "; ".join(f"{name}: {', '.join(sizes)}" for name, sizes in BUNDLE_SIZES.items()))
    with torch.device("meta"):  # the architecture only: no memory, no initialisation
        architecture = getattr(torchaudio.models, f"{family}_{size}")()
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a truncated or foreign file
        raise InteropError(f"{path}: cannot read state dict: {load_failure(err)}") from err
    if not isinstance(state, dict):
        raise InteropError(f"{path}: not a state dict: holds a {type(state).__name__}")
    return _from_parts(architecture, state, family, num_classes, str(path))


def to_torchaudio(model: SpeechEncoder) -> torchaudio.models.Wav2Vec2Model:
    """torchaudio's ``Wav2Vec2Model`` (eval mode) of a waveform wav2vec 2.0, HuBERT or WavLM model, built by
    ``wav2vec2_model`` or ``wavlm_model`` without ``aux``; the pretraining parts are left out."""
    family = model.config.family
    if family not in HF_FAMILIES:
        raise InteropError(f"a {family!r} model has no torchaudio equivalent; converts: {', '.join(HF_FAMILIES)}")
    entry = HF_FAMILIES[family]
    hf = entry.config_to_hf(model.config)  # names an unconvertible front end or position bias
    kwargs = {
        "extractor_mode": f"{hf['feat_extract_norm']}_norm",
        "extractor_conv_layer_config": list(zip(hf["conv_dim"], hf["conv_kernel"], hf["conv_stride"])),
        "extractor_conv_bias": hf["conv_bias"], "encoder_embed_dim": hf["hidden_size"],
        "encoder_projection_dropout": hf["feat_proj_dropout"],
        "encoder_pos_conv_kernel": hf["num_conv_pos_embeddings"],
        "encoder_pos_conv_groups": hf["num_conv_pos_embedding_groups"],
        "encoder_num_layers": hf["num_hidden_layers"], "encoder_num_heads": hf["num_attention_heads"],
        "encoder_attention_dropout": hf["attention_dropout"], "encoder_ff_interm_features": hf["intermediate_size"],
        "encoder_ff_interm_dropout": hf["activation_dropout"], "encoder_dropout": hf["hidden_dropout"],
        "encoder_layer_norm_first": hf["do_stable_layer_norm"], "encoder_layer_drop": hf["layerdrop"],
        "aux_num_out": None,
    }
    if family == "wavlm":
        converted = torchaudio.models.wavlm_model(**kwargs, encoder_num_buckets=hf["num_buckets"],
                                                  encoder_max_distance=hf["max_bucket_distance"])
    else:
        converted = torchaudio.models.wav2vec2_model(**kwargs)
    body = {name: tensor for name, tensor in model.state_dict().items()
            if not name.startswith(("mask_embedding",) + entry.pretraining_parts)}
    converted.load_state_dict(_torchaudio_state(entry.state_dict_to_hf(body), family == "wavlm"))
    return converted.eval()
