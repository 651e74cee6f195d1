"""fairseq2's native wav2vec 2.0 checkpoints: the directory its trainer writes.

    <checkpoint-dir>/model.yaml                          name: checkpoint, model_family, model_config
    <checkpoint-dir>/step_<N>/model/pp_00/tp_00/sdp_00.pt  the model's state dict, fairseq2's names

``model_family`` is ``wav2vec2`` (pretraining: encoder, quantizer and projections) or ``wav2vec2_asr``
(a CTC fine-tuned encoder: it loads as its encoder, the CTC head dropped and the pretraining parts new,
as Hugging Face's ``Wav2Vec2ForCTC`` does). ``model_config`` is fairseq2's ``Wav2Vec2Config`` (or
``Wav2Vec2AsrConfig``) unstructured; fairseq2's own dataclasses and value converter read it, so a
missing key takes fairseq2's default and a wrong one is named. fairseq2 (0.8) has no HuBERT or WavLM
family: those convert through fairseq or Hugging Face.

Reading takes the checkpoint dir (its last step), a ``step_<N>`` dir, its ``model`` dir or one
``.pt`` of fairseq2's names below a ``model.yaml``; checkpoints sharded over pipeline, tensor or data
parallel ranks are refused (fairseq2 consolidates them). The settings go through
:func:`~audiossl.interop.fairseq.config_from_fairseq`, which fairseq2's wav2vec 2.0 mirrors setting by
setting; :func:`save_fairseq2` writes the layout above with step 0, which
``get_wav2vec2_model_hub().load_custom_model(<dir>/step_0/model, config)`` loads.

Padded batches: audiossl keeps padding out of the first CNN layer's group norm (the base layout) and
fairseq2 does not, so there each item's valid frames equal fairseq2's output for that item alone.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import Tensor

from audiossl.atomic import atomic_dir
from audiossl.checkpoint import unfit_weights
from audiossl.errors import InteropError
from audiossl.interop.fairseq import config_from_fairseq, config_to_fairseq, parse_conv_layers, unpickle
from audiossl.models.encoder import SpeechEncoder
from audiossl.models.hf_layout import rename_weights
from audiossl.registry import get_family

METADATA = "model.yaml"
FAMILIES = ("wav2vec2", "wav2vec2_asr")
SHARD = Path("pp_00", "tp_00", "sdp_00.pt")

# (fairseq2 prefix, audiossl prefix), the more specific first
BODY_NAMES: tuple[tuple[str, str], ...] = (
    ("masker.temporal_mask_embed", "mask_embedding"),
    ("encoder_frontend.feature_extractor.layers.{i}.conv.", "frontend.blocks.{i}.conv."),
    ("encoder_frontend.post_extract_layer_norm.", "feature_projection.layer_norm."),
    ("encoder_frontend.model_dim_proj.", "feature_projection.projection."),
    ("encoder_frontend.pos_encoder.conv.weight_g", "encoder.pos_embedding.conv.parametrizations.weight.original0"),
    ("encoder_frontend.pos_encoder.conv.weight_v", "encoder.pos_embedding.conv.parametrizations.weight.original1"),
    ("encoder_frontend.pos_encoder.conv.", "encoder.pos_embedding.conv."),
    ("encoder.layers.{i}.self_attn.output_proj.", "encoder.layers.{i}.attention.out_proj."),
    ("encoder.layers.{i}.self_attn.", "encoder.layers.{i}.attention."),
    ("encoder.layers.{i}.self_attn_layer_norm.", "encoder.layers.{i}.attention_layer_norm."),
    ("encoder.layers.{i}.ffn.inner_proj.", "encoder.layers.{i}.feed_forward.fc1."),
    ("encoder.layers.{i}.ffn.output_proj.", "encoder.layers.{i}.feed_forward.fc2."),
    ("encoder.layers.{i}.ffn_layer_norm.", "encoder.layers.{i}.final_layer_norm."),
)
# the CNN's norm: group norm in layer 0, or layer norm in each layer
CONV_NORM_NAMES = {
    "default": ("encoder_frontend.feature_extractor.layers.0.group_norm.", "frontend.blocks.0.norm."),
    "layer_norm": ("encoder_frontend.feature_extractor.layers.{i}.layer_norm.", "frontend.blocks.{i}.norm."),
}
# the layer norm after the positional convolution (post-norm) or after the last layer (pre-norm)
ENCODER_NORM_NAMES = {False: ("encoder_frontend.layer_norm.", "encoder.layer_norm."),
                      True: ("encoder.layer_norm.", "encoder.layer_norm.")}
HEAD_NAMES: tuple[tuple[str, str], ...] = (
    ("quantizer.entries", "quantizer.codevectors"), ("quantizer.entry_proj.", "quantizer.weight_proj."),
    ("final_target_proj.", "project_q."), ("final_proj.", "final_proj."))
PRETRAINING_PARTS = ("quantizer.", "project_q.", "final_proj.")
UPDATE_COUNT = "quantizer.num_updates"  # fairseq2's temperature schedule state; audiossl's is the trainer's


def _names(config) -> tuple[tuple[str, str], ...]:
    return (BODY_NAMES + (CONV_NORM_NAMES[config.frontend.conv_mode],)
            + (ENCODER_NORM_NAMES[config.encoder.layer_norm_first],) + HEAD_NAMES)


def checkpoint_root(path: str | os.PathLike) -> Path | None:
    """The fairseq2 checkpoint dir (the one holding ``model.yaml``) at or above ``path``, or the
    ``checkpoints`` dir of a fairseq2 run's output dir ``path``; None if none."""
    path = Path(path).absolute()
    if (path / "checkpoints" / METADATA).is_file():
        return path / "checkpoints"
    for candidate in [path, *path.parents][:6]:  # a shard file is five levels below
        if (candidate / METADATA).is_file():
            return candidate
    return None


def weights_file(path: Path, root: Path) -> Path:
    """The state dict file ``path`` stands for: itself, its model dir's shard, or the last step's."""
    if path.is_file():
        return path
    if path in (root, root.parent):  # the checkpoint dir, or the run's output dir above it
        path = root
        steps = {int(match[1]): step for step in path.glob("step_*")
                 if (match := re.fullmatch(r"step_(\d+)", step.name)) and (step / "model").is_dir()}
        if not steps:
            raise InteropError(f"{root}: a fairseq2 checkpoint dir ({METADATA}) with no step_<N>/model dir")
        path = steps[max(steps)]
    if (path / "model").is_dir():
        path = path / "model"
    shards = sorted(str(shard.relative_to(path)) for shard in path.glob("pp_*/tp_*/sdp_*.pt"))
    if shards != [str(SHARD)]:
        found = f"shards {shards}" if shards else "no pp_00/tp_00/sdp_00.pt"
        raise InteropError(f"{path}: {found}; audiossl reads unsharded fairseq2 checkpoints (one {SHARD}): "
                           "consolidate the model's shards with fairseq2 first")
    return path / SHARD


def read_metadata(root: Path) -> tuple[str, Any]:
    """The family and fairseq2 config dataclass of a checkpoint dir's ``model.yaml``."""
    from fairseq2.models.wav2vec2 import Wav2Vec2Config
    from fairseq2.models.wav2vec2.asr import Wav2Vec2AsrConfig
    from fairseq2.utils.structured import StandardValueConverter, StructureError

    source = root / METADATA
    try:
        metadata = yaml.safe_load(source.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise InteropError(f"{source}: cannot read: {err}") from None
    if not isinstance(metadata, dict):
        raise InteropError(f"{source}: holds a {type(metadata).__name__}, not fairseq2's model metadata")
    family, settings = metadata.get("model_family"), metadata.get("model_config")
    if family not in FAMILIES:
        raise InteropError(f"{source}: model_family {family!r} is not supported; supported: {', '.join(FAMILIES)} "
                           "(fairseq2 has no HuBERT or WavLM)")
    if not isinstance(settings, dict):
        arch = f" (it names model_arch {metadata['model_arch']!r}: give the full model_config)" \
            if "model_arch" in metadata else ""
        raise InteropError(f"{source}: model_config is not a mapping of settings{arch}")
    config_class = Wav2Vec2Config if family == "wav2vec2" else Wav2Vec2AsrConfig
    try:
        return family, StandardValueConverter().structure(settings, config_class)
    except StructureError as err:
        reasons = []  # fairseq2 chains one error per level: the field at fault, then why
        while err.__cause__ is not None:
            err = err.__cause__
            reasons.append(str(err).rstrip("."))
        raise InteropError(f"{source}: model_config is not a fairseq2 {config_class.__name__}: "
                           + ": ".join(reasons)) from None


def fairseq_settings(family: str, config: Any) -> dict[str, Any]:
    """fairseq's wav2vec 2.0 settings (:func:`~audiossl.interop.fairseq.config_from_fairseq`) of a fairseq2
    config; fairseq2's settings with no fairseq equivalent must keep fairseq's behaviour, or are named."""
    from fairseq2.models.transformer import TransformerNormOrder
    from fairseq2.models.wav2vec2 import Wav2Vec2Config

    encoder = config.encoder_config
    pre_norm = encoder.norm_order == TransformerNormOrder.PRE
    need = {"use_fbank": False, "use_conformer": False, "pos_encoder_type": "conv",
            "layer_norm_features": not pre_norm, "feature_dim": encoder.feature_extractor_layer_descs[-1][0]}
    wrong = [f"encoder_config.{key}={getattr(encoder, key)!r} (need {want!r})" for key, want in need.items()
             if getattr(encoder, key) != want]
    if encoder.norm_order not in (TransformerNormOrder.PRE, TransformerNormOrder.POST):
        wrong.append(f"encoder_config.norm_order={encoder.norm_order.name} (need PRE or POST)")
    if family == "wav2vec2":
        wrong += [f"{key}={getattr(config, key)!r} (need True)" for key in ("final_proj_bias", "quantizer_encoder_grad")
                  if not getattr(config, key)]
        head = config
    else:  # a fine-tuned encoder: the pretraining parts (and mask: the fine-tuning one is SpecAugment's) new
        head = Wav2Vec2Config(encoder_config=encoder)
    if wrong:
        raise InteropError("unsupported fairseq2 wav2vec2 settings: " + ", ".join(wrong))
    return {
        "extractor_mode": "layer_norm" if encoder.feature_extractor_layer_norm_convs else "default",
        "conv_feature_layers": repr([tuple(layer) for layer in encoder.feature_extractor_layer_descs]),
        "conv_bias": encoder.feature_extractor_bias, "feature_grad_mult": encoder.feature_grad_scale,
        "encoder_layers": encoder.num_encoder_layers, "encoder_embed_dim": encoder.model_dim,
        "encoder_ffn_embed_dim": encoder.ffn_inner_dim, "encoder_attention_heads": encoder.num_encoder_attn_heads,
        "dropout": encoder.dropout_p, "attention_dropout": encoder.attn_dropout_p,
        "activation_dropout": encoder.ffn_inner_dropout_p, "encoder_layerdrop": encoder.layer_drop_p,
        "layer_norm_first": pre_norm, "conv_pos": encoder.pos_conv_kernel_size,
        "conv_pos_groups": encoder.num_pos_conv_groups, "pos_conv_depth": encoder.pos_encoder_depth,
        "dropout_input": encoder.first_pass_dropout_p,
        "mask_prob": head.max_temporal_mask_prob, "mask_length": head.temporal_mask_span_len,
        "final_dim": head.final_dim, "logit_temp": head.logit_temp, "latent_vars": head.num_codebook_entries,
        "latent_groups": head.num_codebooks, "latent_dim": head.quantized_dim,
        "latent_temp": list(head.codebook_sampling_temperature), "num_negatives": head.num_distractors,
    }


def read_state(path: Path, payload: Any = None) -> dict[str, Tensor]:
    """The tensors of a fairseq2 model file (a plain state dict; ``{"model": ...}`` and DDP's ``module.``
    prefix as fairseq2 also reads them), unpickled as fairseq files are (:func:`~audiossl.interop.fairseq.unpickle`)
    unless ``payload`` is the file's content, read already."""
    state = unpickle(path) if payload is None else payload
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not (isinstance(state, dict) and all(isinstance(value, Tensor) for value in state.values())):
        raise InteropError(f"{path}: not a fairseq2 model file (a state dict of tensors)")
    return {name.removeprefix("module."): tensor for name, tensor in state.items()}


def load_fairseq2(path: str | os.PathLike, payload: Any = None) -> SpeechEncoder:
    """The audiossl wav2vec 2.0 model (eval mode) of a fairseq2 checkpoint (see the module notes).

    ``model.extract_features(wavs (B, S), lengths (B,))`` gives the fairseq2 encoder front end's output,
    then each layer's (the last with the final layer norm in pre-norm models).
    ``payload``: the content of the file ``path`` names, when the caller has read it.
    """
    path = Path(path).absolute()
    root = checkpoint_root(path)
    if root is None:
        raise InteropError(f"{path}: no fairseq2 {METADATA} here or in the directories above: fairseq2 keeps "
                           "a checkpoint's config there")
    family, fairseq2_config = read_metadata(root)
    try:
        config = config_from_fairseq("wav2vec2", fairseq_settings(family, fairseq2_config))
    except InteropError as err:
        raise InteropError(f"{root / METADATA}: {err}") from None
    model = get_family("wav2vec2").build(config)
    source = weights_file(path, root)
    state = read_state(source, payload if source == path else None)
    state.pop(UPDATE_COUNT, None)
    if family == "wav2vec2_asr":  # the CTC head
        for name in ("final_proj.weight", "final_proj.bias"):
            state.pop(name, None)
    dim = config.encoder.dim
    if "encoder_frontend.model_dim_proj.weight" not in state and config.frontend.conv_layers[-1][0] == dim:
        # fairseq2 has no projection when the CNN's channels equal the model's dimension
        state["encoder_frontend.model_dim_proj.weight"] = torch.eye(dim)
        state["encoder_frontend.model_dim_proj.bias"] = torch.zeros(dim)
    renamed, unknown = {}, []
    for name, tensor in state.items():
        try:
            renamed |= rename_weights({name: tensor}, _names(config), to_hf=False, source="fairseq2")
        except InteropError:
            unknown.append(name)
    optional = ("mask_embedding",) + (PRETRAINING_PARTS if family == "wav2vec2_asr" else ())
    unfit = unfit_weights(model.state_dict(), renamed, optional, lambda name: _fairseq2_name(name, config))
    problems = ([f"unknown to fairseq2's wav2vec2 {unknown}"] if unknown else []) + ([unfit] if unfit else [])
    if problems:
        raise InteropError(f"{source}: weights do not fit {root / METADATA}: " + "; ".join(problems))
    model.load_state_dict(renamed, strict=False)
    return model.eval()


def _fairseq2_name(name: str, config) -> str:
    """fairseq2's name of an audiossl weight, for messages."""
    return next(iter(rename_weights({name: None}, _names(config), to_hf=True, source="audiossl")))


def fairseq2_config(config) -> Any:
    """fairseq2's ``Wav2Vec2Config`` of an audiossl wav2vec 2.0 config (through fairseq's settings)."""
    from fairseq2.models.transformer import TransformerNormOrder
    from fairseq2.models.wav2vec2 import Wav2Vec2Config, Wav2Vec2EncoderConfig

    if config.family != "wav2vec2":
        raise InteropError(f"fairseq2 has a wav2vec 2.0 family only, not {config.family!r}: "
                           "convert HuBERT and WavLM to fairseq or Hugging Face")
    if config.frontend.sample_rate != 16000:
        raise InteropError(f"fairseq2's wav2vec 2.0 takes 16 kHz audio; the model's is {config.frontend.sample_rate} Hz")
    fairseq = config_to_fairseq(config)["model"]  # names a front end or encoder fairseq has no equivalent of
    layers = parse_conv_layers(fairseq["conv_feature_layers"])
    encoder = Wav2Vec2EncoderConfig(
        model_dim=fairseq["encoder_embed_dim"], feature_dim=layers[-1][0], use_fbank=False,
        first_pass_dropout_p=fairseq["dropout_input"], layer_norm_features=not fairseq["layer_norm_first"],
        feature_extractor_layer_descs=[tuple(layer) for layer in layers],
        feature_extractor_bias=fairseq["conv_bias"],
        feature_extractor_layer_norm_convs=fairseq["extractor_mode"] == "layer_norm",
        feature_grad_scale=fairseq["feature_grad_mult"], pos_conv_kernel_size=fairseq["conv_pos"],
        num_pos_conv_groups=fairseq["conv_pos_groups"], num_encoder_layers=fairseq["encoder_layers"],
        num_encoder_attn_heads=fairseq["encoder_attention_heads"], ffn_inner_dim=fairseq["encoder_ffn_embed_dim"],
        dropout_p=fairseq["dropout"], attn_dropout_p=fairseq["attention_dropout"],
        ffn_inner_dropout_p=fairseq["activation_dropout"], layer_drop_p=fairseq["encoder_layerdrop"],
        norm_order=TransformerNormOrder.PRE if fairseq["layer_norm_first"] else TransformerNormOrder.POST)
    return Wav2Vec2Config(
        encoder_config=encoder, final_dim=fairseq["final_dim"], temporal_mask_span_len=fairseq["mask_length"],
        max_temporal_mask_prob=fairseq["mask_prob"], quantized_dim=fairseq["latent_dim"],
        num_codebooks=fairseq["latent_groups"], num_codebook_entries=fairseq["latent_vars"],
        codebook_sampling_temperature=tuple(fairseq["latent_temp"]), num_distractors=fairseq["num_negatives"],
        logit_temp=fairseq["logit_temp"])


def state_dict_to_fairseq2(model: SpeechEncoder) -> dict[str, Tensor]:
    """The state dict of fairseq2's ``Wav2Vec2Model`` of :func:`fairseq2_config` from a wav2vec 2.0 ``model``
    (one without its pretraining parts gives the encoder's weights only)."""
    config = model.config
    state = {name: tensor.detach().contiguous() for name, tensor in model.state_dict().items()}
    fairseq2_state = rename_weights(state, _names(config), to_hf=True, source="audiossl")
    if config.frontend.conv_layers[-1][0] == config.encoder.dim:  # no projection in fairseq2
        weight = fairseq2_state.pop("encoder_frontend.model_dim_proj.weight")
        bias = fairseq2_state.pop("encoder_frontend.model_dim_proj.bias")
        if not (torch.equal(weight, torch.eye(weight.shape[0])) and not bias.any()):
            raise InteropError("fairseq2 has no feature projection when the CNN's channels equal the model's "
                               "dimension; this model's projection is not the identity")
    fairseq2_state[UPDATE_COUNT] = torch.zeros((), dtype=torch.int64)
    return fairseq2_state


def save_fairseq2(model: SpeechEncoder, directory: str | os.PathLike) -> Path:
    """Write a wav2vec 2.0 ``model`` (with its pretraining parts) as a fairseq2 checkpoint dir at step 0;
    returns it. The directory is replaced whole, or kept as it was on a failure; one that holds
    anything but an earlier such dir (``model.yaml``, ``step_<N>``) is refused, not emptied."""
    from fairseq2.models.wav2vec2 import create_wav2vec2_model
    from fairseq2.utils.structured import StandardValueConverter

    settings = fairseq2_config(model.config)
    if not any(name.startswith(PRETRAINING_PARTS) for name in model.state_dict()):
        raise InteropError("fairseq2's wav2vec2 models hold the quantizer; the model has no pretraining parts")
    try:  # fairseq2 checks its settings as it builds (a frozen CNN, no mask): built without weights
        with torch.device("meta"):
            create_wav2vec2_model(settings)
    except ValueError as err:
        raise InteropError(f"fairseq2 cannot build this model: {err}") from None
    directory = Path(directory)
    others = sorted(entry.name for entry in directory.iterdir()
                    if entry.name != METADATA and not re.fullmatch(r"step_\d+", entry.name)) \
        if directory.is_dir() else []
    if others:
        raise InteropError(f"{directory} holds {others[:5]}: not an earlier fairseq2 checkpoint dir of "
                           "to-fairseq2, which it would replace whole; name a new or empty directory")
    fairseq2_state = state_dict_to_fairseq2(model)
    metadata = {"name": "checkpoint", "model_family": "wav2vec2",
                "model_config": StandardValueConverter().unstructure(settings)}
    with atomic_dir(directory) as tmp:
        (tmp / METADATA).write_text(yaml.safe_dump(metadata, sort_keys=False), encoding="utf-8")
        shard = tmp / "step_0" / "model" / SHARD
        shard.parent.mkdir(parents=True)
        torch.save(fairseq2_state, shard)
    return directory

