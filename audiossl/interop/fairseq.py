"""fairseq-format checkpoints of wav2vec 2.0 and HuBERT (the ``.pt`` that fairseq's trainer writes: its
config under ``cfg``, or ``args`` in files older than fairseq's hydra configs, the weights under
``model``) and of WavLM (unilm's ``WavLM.py`` release: ``{"cfg": WavLMConfig fields, "model": weights}``);
also s3prl's fairseq-free conversions of the first two (``task_cfg``, ``model_cfg``, ``model_weight``).

Reading (:func:`read_fairseq`, :func:`unpickle`) unpickles with ``torch.load(weights_only=True)`` and an allow-list of the
types such files hold (:func:`allowed_globals`): tensors and containers, ``argparse.Namespace`` (``args``),
plain omegaconf ``DictConfig``/``ListConfig`` trees, numpy scalars and arrays (``extra_state``) and
HuBERT's label dictionaries (``task_state``), which become inert :class:`FairseqDictionary` records. Any
other global (a callable, a class) is refused by name before anything in the file runs. fairseq itself
is never imported.

Converting is pure (:func:`config_from_fairseq`, :func:`state_dict_from_fairseq` and their inverses):
fairseq's names are the ones the config docstrings cite in brackets. HuBERT's ``label_embs_concat``
starts with the rows of fairseq's special symbols (``<s>``, ``<pad>``, ``</s>``, ``<unk>``); audiossl keeps
the rows of clusters ``0 .. K-1`` only, as its k-means targets count. fairseq's ``task.normalize`` (the
large models standardise each waveform) is a data step: give such models standardised waveforms (loading
such a file logs a warning that says so).
"""
from __future__ import annotations

import argparse
import ast
import collections
import io
import logging
import math
import os
import pickletools
import typing
import zipfile
from _compat_pickle import IMPORT_MAPPING, NAME_MAPPING
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch._weights_only_unpickler import _get_allowed_globals  # torch's own weights-only set

from audiossl.atomic import atomic_path
from audiossl.checkpoint import load_failure, unfit_weights
from audiossl.config_fields import checked_value
from audiossl.errors import ConfigError, InteropError
from audiossl.models.components import ConvLayers, EncoderConfig, FrontendConfig, MaskConfig, ModelConfig
from audiossl.models.encoder import SpeechEncoder
from audiossl.models.hf_layout import rename_weights
from audiossl.registry import get_family

logger = logging.getLogger(__name__)

FAMILIES = ("wav2vec2", "hubert", "wavlm")
NUM_SPECIAL_SYMBOLS = 4  # fairseq's Dictionary: <s>, <pad>, </s>, <unk> before the labels
S3PRL_CONFIGS = ("task_cfg", "model_cfg")  # s3prl's fairseq-free files: fairseq's cfg sections, weights as model_weight
DEFAULT_CONV_LAYERS = "[(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512, 2, 2)] * 2"
_MAX_REPEAT = 1000  # the largest "* n" a conv_feature_layers string may use
SIZE_SETTINGS = ("conv_feature_layers", "encoder_layers", "encoder_embed_dim", "encoder_ffn_embed_dim",
                 "encoder_attention_heads", "conv_pos", "conv_pos_groups")  # what shapes the weights

# (fairseq name prefix, audiossl name prefix); {i} stands for a layer index; the first matching prefix wins.
BODY_NAMES: tuple[tuple[str, str], ...] = (
    ("mask_emb", "mask_embedding"),
    ("feature_extractor.conv_layers.{i}.0.", "frontend.blocks.{i}.conv."),
    ("layer_norm.", "feature_projection.layer_norm."),
    ("post_extract_proj.", "feature_projection.projection."),
    ("encoder.pos_conv.0.", "encoder.pos_embedding.conv."),
    ("encoder.layer_norm.", "encoder.layer_norm."),
    ("encoder.layers.0.self_attn.relative_attention_bias.", "encoder.position_bias.embedding."),
    ("encoder.layers.{i}.self_attn.grep_linear.", "encoder.layers.{i}.attention.gate.linear."),
    ("encoder.layers.{i}.self_attn.grep_a", "encoder.layers.{i}.attention.gate.const"),
    ("encoder.layers.{i}.self_attn.", "encoder.layers.{i}.attention."),
    ("encoder.layers.{i}.self_attn_layer_norm.", "encoder.layers.{i}.attention_layer_norm."),
    ("encoder.layers.{i}.fc1.", "encoder.layers.{i}.feed_forward.fc1."),
    ("encoder.layers.{i}.fc2.", "encoder.layers.{i}.feed_forward.fc2."),
    ("encoder.layers.{i}.final_layer_norm.", "encoder.layers.{i}.final_layer_norm."),
)
# the CNN's norm: group norm in layer 0 (extractor_mode "default") or layer norm in each layer ("layer_norm")
CONV_NORM_NAMES = {
    "default": ("feature_extractor.conv_layers.{i}.2.", "frontend.blocks.{i}.norm."),
    "layer_norm": ("feature_extractor.conv_layers.{i}.2.1.", "frontend.blocks.{i}.norm."),
}
HEAD_NAMES = {
    "wav2vec2": (("quantizer.vars", "quantizer.codevectors"), ("quantizer.weight_proj.", "quantizer.weight_proj."),
                 ("project_q.", "project_q."), ("final_proj.", "final_proj.")),
    "hubert": (("final_proj.", "head.final_proj."),),  # label_embs_concat: see state_dict_from_fairseq
    "wavlm": (("final_proj.", "head.final_proj."),),  # unilm's WavLM.py has no head; fairseq-style files may
}
_WEIGHT_NORM = (("weight_g", "parametrizations.weight.original0"), ("weight_v", "parametrizations.weight.original1"))


class UnsafeCheckpointError(InteropError):
    """A pickle that references a type outside :func:`allowed_globals`; names the file and the types."""


class FairseqDictionary:
    """Stands in for ``fairseq.data.dictionary.Dictionary`` when unpickling: an attribute record
    (``symbols``, ``nspecial``, ...); no fairseq code runs and none of its methods exist here."""


def allowed_globals() -> list[Any]:
    """What the restricted unpickler admits beyond torch's own weights-only set (tensors, storages,
    ``OrderedDict``), in ``torch.serialization.safe_globals`` form."""
    admitted: list[Any] = [argparse.Namespace, (FairseqDictionary, "fairseq.data.dictionary.Dictionary"),
                           np.ndarray, np.dtype, *{type(np.dtype(code)) for code in np.typecodes["All"]}]
    multiarray = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):  # numpy 1 and numpy 2 pickles
        admitted += [(multiarray.scalar, f"{module}.scalar"), (multiarray._reconstruct, f"{module}._reconstruct")]
    try:
        from omegaconf import DictConfig, ListConfig, nodes
        from omegaconf.base import ContainerMetadata, Metadata
    except ImportError:  # without omegaconf, a pickled DictConfig is refused by name
        return admitted
    return admitted + [DictConfig, ListConfig, ContainerMetadata, Metadata, nodes.AnyNode, typing.Any, dict, list,
                       int, collections.defaultdict]


def _global_name(item: Any) -> str:
    return item[1] if isinstance(item, tuple) else f"{item.__module__}.{item.__qualname__}"


def pickled_globals(path: str | os.PathLike) -> set[str]:
    """``module.name`` of every global the pickle in ``path`` references, found by reading its opcodes
    (nothing is unpickled): the ``data.pkl`` of a torch zip file, or the pickles of a legacy file."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            name = next(name for name in archive.namelist() if name.endswith("data.pkl"))
            stream = io.BytesIO(archive.read(name))
    else:
        stream = io.BytesIO(Path(path).read_bytes())
    found: set[str] = set()
    memo: dict[int, Any] = {}
    pushed: list[Any] = []  # what each opcode pushed, strings kept: the operands of STACK_GLOBAL
    try:
        while stream.tell() < len(stream.getbuffer()):
            for op, arg, _ in pickletools.genops(stream):
                if op.name in ("GLOBAL", "INST"):  # protocol 2 names Python 2 modules, as torch maps them
                    module, name = arg.split(" ")
                    module, name = NAME_MAPPING.get((module, name), (IMPORT_MAPPING.get(module, module), name))
                    found.add(f"{module}.{name}")
                elif op.name == "STACK_GLOBAL":
                    found.add(".".join(str(part) for part in pushed[-2:]))
                elif op.name == "MEMOIZE":
                    memo[len(memo)] = pushed[-1] if pushed else None
                elif op.name.endswith("PUT"):
                    memo[arg] = pushed[-1] if pushed else None
                elif op.name.endswith("GET"):
                    pushed.append(memo.get(arg))
                if op.stack_after and not op.name.endswith(("GET", "MEMOIZE")):
                    pushed.append(arg if isinstance(arg, str) and op.name not in ("GLOBAL", "INST") else None)
    except ValueError:  # a legacy file's raw storage bytes follow its pickles
        pass
    return found


def read_fairseq(path: str | os.PathLike) -> dict[str, Any]:
    """What a fairseq checkpoint file holds (:func:`unpickle`); an InteropError unless it is a dict."""
    payload = unpickle(path)
    if not isinstance(payload, dict):
        raise InteropError(f"{path}: not a fairseq checkpoint: holds a {type(payload).__name__}, not a dict")
    return payload


def unpickle(path: str | os.PathLike) -> Any:
    """What the torch file ``path`` holds, unpickled with the allow-list of :func:`allowed_globals`.

    Raises :class:`UnsafeCheckpointError` naming each refused type (nothing in the file has run), or
    :class:`~audiossl.errors.InteropError` for a file torch cannot read.
    """
    admitted = allowed_globals()
    try:
        with torch.serialization.safe_globals(admitted):
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a refused, truncated or foreign file
        try:
            refused = sorted(pickled_globals(path) - {_global_name(item) for item in admitted}
                             - set(_get_allowed_globals()))
        except (OSError, ValueError, StopIteration, zipfile.BadZipFile):
            refused = []
        if refused:
            raise UnsafeCheckpointError(
                f"{path}: refused to unpickle {', '.join(refused)}: not a type fairseq checkpoints hold "
                f"(tensors, containers, argparse.Namespace, omegaconf configs, numpy values, label dictionaries); "
                f"nothing in the file was run") from None
        raise InteropError(f"{path}: cannot read checkpoint: {load_failure(err)}") from err
    return payload


def fairseq_layout(payload: dict[str, Any]) -> dict[str, Any] | None:
    """An unpickled file in fairseq's layout (weights under ``model``, a config under ``cfg`` or ``args``):
    a fairseq file as it is, s3prl's conversion of one (``hubert_local``, ``wav2vec2_local``: ``task_cfg``,
    ``model_cfg``, ``model_weight`` and HuBERT's ``dictionaries_symbols``) rearranged; None for neither."""
    if isinstance(payload.get("model"), dict) and (payload.get("cfg") is not None or payload.get("args") is not None):
        return payload
    if not (isinstance(payload.get("model_weight"), dict) and all(key in payload for key in S3PRL_CONFIGS)):
        return None
    task, model = (_plain(payload[key]) for key in S3PRL_CONFIGS)
    if not (isinstance(task, dict) and isinstance(model, dict)):
        raise InteropError("its task_cfg and model_cfg (s3prl's layout) are not both mappings of settings")
    symbols = payload.get("dictionaries_symbols")
    model.setdefault("_name", "wav2vec2" if symbols is None else "hubert")
    dictionaries = None if symbols is None else [s3prl_dictionary(labels) for labels in _plain(symbols)]
    return {"cfg": {"task": task, "model": model}, "model": payload["model_weight"],
            "task_state": {"dictionaries": dictionaries}}


def s3prl_dictionary(symbols: list[str]) -> FairseqDictionary:
    """The label dictionary of s3prl's ``dictionaries_symbols`` entry: fairseq's, specials first."""
    dictionary = FairseqDictionary()
    dictionary.symbols, dictionary.nspecial = symbols, NUM_SPECIAL_SYMBOLS
    return dictionary


def _plain(value: Any) -> Any:
    """``value`` with Namespaces and omegaconf configs turned into dicts and lists, recursively."""
    if isinstance(value, argparse.Namespace):
        value = vars(value)
    elif type(value).__module__.startswith("omegaconf."):
        from omegaconf import OmegaConf

        value = OmegaConf.to_container(value, resolve=True)
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def fairseq_settings(payload: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The audiossl family of a fairseq checkpoint and its settings, one flat dict: the model's keys over
    the criterion's over the task's (``cfg``), or ``args`` as they are, or unilm WavLM's ``cfg``."""
    old = payload.get("args") is not None
    settings = _plain(payload["args"] if old else payload.get("cfg"))
    if not isinstance(settings, dict):
        raise InteropError(f"its {'args' if old else 'cfg'} is a {type(settings).__name__}, not a mapping")
    if old:
        arch = settings.get("arch")
    elif "model" in settings:
        cfg = settings
        sections = {name: cfg.get(name) or {} for name in ("task", "criterion", "model")}
        wrong = [name for name, section in sections.items() if not isinstance(section, dict)]
        if wrong:
            raise InteropError(f"its cfg's {', '.join(wrong)} section is not a mapping of settings")
        settings = {**sections["task"], **sections["criterion"], **sections["model"]}
        arch = (cfg.get("model") or {}).get("_name")
    else:
        arch = "wavlm"
    if arch not in FAMILIES:
        raise InteropError(f"fairseq model {arch!r} is not supported; supported: wav2vec2, hubert and "
                           "WavLM as unilm's WavLM.py stores it (fine-tuned CTC checkpoints are not)")
    return arch, settings


def parse_conv_layers(spec: str) -> ConvLayers:
    """fairseq's ``conv_feature_layers`` (``"[(512, 10, 5)] + [(512, 3, 2)] * 4"``) without ``eval``:
    list literals joined by ``+`` and repeated by ``* n``."""
    def value(node: ast.AST) -> Any:
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            return value(node.left) + value(node.right)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
            left, right = value(node.left), value(node.right)
            if max(left if isinstance(left, int) else 0, right if isinstance(right, int) else 0) > _MAX_REPEAT:
                raise ValueError(f"repeats more than {_MAX_REPEAT} times")
            return left * right
        return ast.literal_eval(node)

    try:
        return tuple((int(c), int(k), int(s)) for c, k, s in value(ast.parse(spec, mode="eval").body))
    except (SyntaxError, ValueError, TypeError) as err:
        raise InteropError(f"cannot read conv_feature_layers {spec!r}: {err}") from None


def _literal(value: Any) -> Any:
    """Old fairseq ``args`` keep tuples and lists as strings (``"(2, 0.5, 0.999995)"``)."""
    try:
        return ast.literal_eval(value) if isinstance(value, str) else value
    except (SyntaxError, ValueError) as err:
        raise InteropError(f"cannot read fairseq setting {value!r}: {err}") from None


def _numbers(value: Any, key: str, lengths: tuple[int, ...]) -> list[float]:
    """fairseq setting ``key``: a list (text in old ``args``) of as many numbers as one of ``lengths``."""
    value = _literal(value)
    if not (isinstance(value, (list, tuple)) and len(value) in lengths
            and all(isinstance(item, (int, float)) and not isinstance(item, bool) for item in value)):
        raise InteropError(f"fairseq setting {key}: expected a list of {' or '.join(map(str, lengths))} numbers, "
                           f"got {value!r}")
    return [float(item) for item in value]


def config_from_fairseq(family: str, settings: dict[str, Any], num_classes: int = 100) -> ModelConfig:
    """The audiossl config of fairseq ``settings`` (see :func:`fairseq_settings`) of ``family``.

    Missing keys take fairseq's defaults; a setting that changes the hidden states and has no
    audiossl equivalent is an :class:`~audiossl.errors.InteropError` naming it. ``num_classes``
    sizes a HuBERT/WavLM head that the checkpoint does not store.
    """
    def get(key: str, default: Any) -> Any:
        """The setting, or fairseq's default; a scalar must have its default's type (a number may be text)."""
        value = settings.get(key)
        if value is None or type(default) not in (bool, int, float, str):
            return default if value is None else value
        try:
            return checked_value(value, type(default), f"fairseq setting {key}")
        except ConfigError as err:
            raise InteropError(str(err)) from None

    relative = family == "wavlm" and bool(get("relative_position_embedding", False))
    need = {"activation_fn": "gelu", "layer_type": "transformer", "pos_conv_depth": 1, "conv_pos_batch_norm": False,
            "target_glu": False}
    if family == "wav2vec2":
        need |= {"quantize_targets": True, "quantize_input": False, "quantizer_depth": 1}
    if relative:
        need["gru_rel_pos"] = True
    wrong = [f"{key}={get(key, want)!r} (need {want!r})" for key, want in need.items() if get(key, want) != want]
    conv_mode = get("extractor_mode", "default")
    if conv_mode not in CONV_NORM_NAMES:
        wrong.append(f"extractor_mode={conv_mode!r} (need 'default' or 'layer_norm')")
    if wrong:
        raise InteropError(f"unsupported fairseq {family} settings: " + ", ".join(wrong))
    dim = get("encoder_embed_dim", 768)
    frontend = FrontendConfig(kind="waveform", conv_layers=parse_conv_layers(get("conv_feature_layers",
                                                                                  DEFAULT_CONV_LAYERS)),
                              conv_mode=conv_mode, conv_bias=bool(get("conv_bias", False)),
                              sample_rate=get("sample_rate", 16000))
    encoder = EncoderConfig(
        num_layers=get("encoder_layers", 12), dim=dim, ffn_dim=get("encoder_ffn_embed_dim", 3072),
        num_heads=get("encoder_attention_heads", 12), dropout=get("dropout", 0.1),
        attention_dropout=get("attention_dropout", 0.1), activation_dropout=get("activation_dropout", 0.0),
        layer_drop=get("encoder_layerdrop", 0.0), layer_norm_first=bool(get("layer_norm_first", False)),
        conv_pos=get("conv_pos", 128), conv_pos_groups=get("conv_pos_groups", 16),
        position_bias="gated_relative" if relative else "none", position_buckets=get("num_buckets", 320),
        max_distance=get("max_distance", 1280 if relative else EncoderConfig.max_distance))  # unilm's default
    common = {"frontend": frontend, "encoder": encoder, "final_dim": get("final_dim", 0) or dim,
              "mask": MaskConfig(prob=get("mask_prob", 0.65), length=get("mask_length", 10), min_masks=2),
              "logit_temp": get("logit_temp", 0.1), "feature_grad_mult": get("feature_grad_mult", 1.0),
              "dropout_input": get("dropout_input", 0.0)}
    try:
        if family == "wav2vec2":
            max_temperature, min_temperature, decay = _numbers(get("latent_temp", (2.0, 0.5, 0.999995)),
                                                               "latent_temp", (3,))
            loss_weights = _numbers(get("loss_weights", [0.1, 10.0]), "loss_weights", (1, 2))
            diversity, penalty = (loss_weights * 2)[:2]  # one weight: both
            family_settings = {
                "codebook_groups": get("latent_groups", 2), "codebook_entries": get("latent_vars", 320),
                "codebook_dim": get("latent_dim", 0) or common["final_dim"], "max_temperature": max_temperature,
                "min_temperature": min_temperature, "temperature_decay": decay,
                "num_distractors": get("num_negatives", 100), "diversity_weight": diversity,
                "feature_penalty_weight": penalty, "dropout_features": get("dropout_features", 0.0)}
        else:
            family_settings = {"num_classes": num_classes, "unmasked_weight": get("pred_nomask_weight", 0.0)}
        config = get_family(family).config_class(**common, **family_settings)
        config.validate()
    except (ConfigError, TypeError, ValueError) as err:
        raise InteropError(f"fairseq {family} settings do not make a valid audiossl config: {err}") from err
    return config


def config_to_fairseq(config: ModelConfig) -> dict[str, Any]:
    """The ``cfg`` of a fairseq checkpoint for an audiossl config: fairseq's ``model``, ``task`` and
    ``criterion`` sections for wav2vec 2.0 and HuBERT, unilm's flat WavLMConfig fields for WavLM."""
    family = config.family
    if family not in FAMILIES:  # first: a downstream model's config (CTC, utterance) has no front end
        raise InteropError(f"a {family!r} model has no fairseq checkpoint format here; "
                           f"converts: {', '.join(FAMILIES)}")
    frontend, encoder = config.frontend, config.encoder
    if frontend.kind != "waveform":
        raise InteropError(f"only the waveform front end has a fairseq equivalent, not {frontend.kind!r}")
    if encoder.kind != "transformer":
        raise InteropError(f"only the transformer encoder has a fairseq equivalent, not {encoder.kind!r}")
    bias = "gated_relative" if family == "wavlm" else "none"
    if encoder.position_bias not in (bias, "none"):
        raise InteropError(f"fairseq's {family} has attention position bias {bias!r}, "
                           f"the model has {encoder.position_bias!r}")
    model = {
        "extractor_mode": frontend.conv_mode,
        "conv_feature_layers": repr([tuple(layer) for layer in frontend.conv_layers]),
        "conv_bias": frontend.conv_bias,
        "encoder_layers": encoder.num_layers, "encoder_embed_dim": encoder.dim,
        "encoder_ffn_embed_dim": encoder.ffn_dim, "encoder_attention_heads": encoder.num_heads,
        "activation_fn": "gelu", "dropout": encoder.dropout, "attention_dropout": encoder.attention_dropout,
        "activation_dropout": encoder.activation_dropout, "encoder_layerdrop": encoder.layer_drop,
        "layer_norm_first": encoder.layer_norm_first, "conv_pos": encoder.conv_pos,
        "conv_pos_groups": encoder.conv_pos_groups, "dropout_input": config.dropout_input,
        "feature_grad_mult": config.feature_grad_mult, "final_dim": config.final_dim,
        "logit_temp": config.logit_temp, "mask_prob": config.mask.prob, "mask_length": config.mask.length,
    }
    if family == "wavlm":  # unilm's WavLMConfig takes any key; final_dim and logit_temp describe audiossl's head
        relative = encoder.position_bias == "gated_relative"
        return {**model, "normalize": False, "sample_rate": frontend.sample_rate,
                "relative_position_embedding": relative, "gru_rel_pos": relative,
                "num_buckets": encoder.position_buckets, "max_distance": encoder.max_distance}
    if family == "wav2vec2":
        model |= {"_name": "wav2vec2", "quantize_targets": True, "latent_vars": config.codebook_entries,
                  "latent_groups": config.codebook_groups, "latent_dim": config.codebook_dim,
                  "latent_temp": [config.max_temperature, config.min_temperature, config.temperature_decay],
                  "num_negatives": config.num_distractors, "dropout_features": config.dropout_features}
        task = {"_name": "audio_pretraining", "sample_rate": frontend.sample_rate, "normalize": False}
        criterion = {"_name": "wav2vec", "infonce": True,
                     "loss_weights": [config.diversity_weight, config.feature_penalty_weight]}
    else:
        frame_rate = frontend.sample_rate / math.prod(stride for _, _, stride in frontend.conv_layers)
        model |= {"_name": "hubert", "label_rate": float(frame_rate)}
        task = {"_name": "hubert_pretraining", "labels": ["km"], "label_rate": float(frame_rate),
                "sample_rate": frontend.sample_rate, "normalize": False}
        criterion = {"_name": "hubert", "pred_masked_weight": 1.0, "pred_nomask_weight": config.unmasked_weight}
    return {"model": model, "task": task, "criterion": criterion}


def _names(config: ModelConfig) -> tuple[tuple[str, str], ...]:
    return BODY_NAMES + (CONV_NORM_NAMES[config.frontend.conv_mode],) + HEAD_NAMES[config.family]


def label_rows(num_rows: int, dictionaries: list[FairseqDictionary] | None) -> list[int]:
    """The rows of ``label_embs_concat`` (``num_rows`` of them) that hold clusters ``0 .. K-1``, in order.

    With the label dictionary of ``task_state`` the rows follow its symbols (``"0"`` .. ``"K-1"`` after the
    special ones); without one the rows after fairseq's four special symbols are taken in order.
    """
    if not dictionaries:
        return list(range(NUM_SPECIAL_SYMBOLS, num_rows))
    try:
        (dictionary,) = dictionaries
        symbols = list(dictionary.symbols)
        labels = symbols[dictionary.nspecial:]
    except (ValueError, TypeError, AttributeError):
        raise InteropError("task_state's label dictionaries are not one fairseq Dictionary (a HuBERT head "
                           "over several label sets has no audiossl equivalent)") from None
    row_of = {symbol: row for row, symbol in enumerate(symbols)}
    try:
        rows = [row_of[str(cluster)] for cluster in range(len(labels))]
    except KeyError:
        raise InteropError(f"HuBERT labels are not cluster ids 0 .. {len(labels) - 1}: {labels[:5]} ...") from None
    if len(symbols) != num_rows:
        raise InteropError(f"label_embs_concat has {num_rows} rows, its dictionary {len(symbols)} symbols")
    return rows


def state_dict_from_fairseq(state: dict[str, Tensor], config: ModelConfig,
                            rows: list[int] | None = None) -> dict[str, Tensor]:
    """audiossl weights from a fairseq state dict whose model ``config`` describes.

    ``rows``: the rows of ``label_embs_concat`` to keep (:func:`label_rows`; default: all but the four
    special symbols'). Without ``post_extract_proj`` (fairseq omits it when the CNN's channels equal the
    model dimension) the projection is the identity. :class:`~audiossl.errors.InteropError` names unknown weights.
    """
    state = dict(state)
    labels = state.pop("label_embs_concat", None)
    channels, dim = config.frontend.conv_layers[-1][0], config.encoder.dim
    if "post_extract_proj.weight" not in state and channels == dim:
        state["post_extract_proj.weight"], state["post_extract_proj.bias"] = torch.eye(dim), torch.zeros(dim)
    ours = rename_weights(state, _names(config), to_hf=False, source="fairseq")
    for fairseq_suffix, suffix in _WEIGHT_NORM:
        name = f"encoder.pos_embedding.conv.{fairseq_suffix}"
        if name in ours:
            ours[name.replace(fairseq_suffix, suffix)] = ours.pop(name)
    if labels is not None:
        ours["head.label_embeddings"] = labels[label_rows(labels.shape[0], None) if rows is None else rows]
    return ours


def state_dict_to_fairseq(state: dict[str, Tensor], config: ModelConfig) -> dict[str, Tensor]:
    """A fairseq state dict (unilm's for WavLM, without the head) from audiossl weights of ``config``.

    The positional convolution is stored as fairseq's ``weight_g``/``weight_v``; HuBERT's label
    embeddings get zero rows for fairseq's four special symbols in front.
    """
    state = {name: tensor.detach() for name, tensor in state.items()
             if not (config.family == "wavlm" and name.startswith("head."))}
    labels = state.pop("head.label_embeddings", None)
    fairseq = rename_weights(state, _names(config), to_hf=True, source="audiossl")
    for fairseq_suffix, suffix in _WEIGHT_NORM:
        fairseq[f"encoder.pos_conv.0.{fairseq_suffix}"] = fairseq.pop(f"encoder.pos_conv.0.{suffix}")
    channels, dim = config.frontend.conv_layers[-1][0], config.encoder.dim
    if channels == dim:  # fairseq has no projection then: it must be the identity
        weight, bias = fairseq.pop("post_extract_proj.weight"), fairseq.pop("post_extract_proj.bias")
        if not (torch.equal(weight, torch.eye(dim)) and not bias.any()):
            raise InteropError(f"fairseq has no feature projection when the CNN has {dim} channels, as the model's "
                               "dimension; this model's projection is not the identity")
    if labels is not None:
        fairseq["label_embs_concat"] = torch.cat([labels.new_zeros(NUM_SPECIAL_SYMBOLS, labels.shape[1]), labels])
    return fairseq


def _fairseq_name(name: str, config: ModelConfig) -> str:
    """fairseq's name of an audiossl weight, for messages."""
    special = {"head.label_embeddings": "label_embs_concat",
               **{f"encoder.pos_embedding.conv.{suffix}": f"encoder.pos_conv.0.{old}" for old, suffix in _WEIGHT_NORM}}
    if name in special:
        return special[name]
    return next(iter(rename_weights({name: None}, _names(config), to_hf=True, source="audiossl")))


def model_from_fairseq(payload: dict[str, Any], num_classes: int = 100, source: str = "fairseq checkpoint"
                       ) -> SpeechEncoder:
    """The audiossl model (eval mode) of an unpickled fairseq checkpoint (see :func:`load_fairseq`)."""
    try:
        family, settings = fairseq_settings(payload)
        state = payload["model"]
        not_tensors = [name for name, value in state.items() if not isinstance(value, Tensor)]
        if not_tensors:
            raise InteropError(f"its model weights hold values that are not tensors: {not_tensors}")
        labels = state.get("label_embs_concat")
        task_state = payload.get("task_state") or {}
        if not isinstance(task_state, dict):
            raise InteropError(f"its task_state is a {type(task_state).__name__}, not a mapping")
        dictionaries = task_state.get("dictionaries")
        rows = label_rows(labels.shape[0], dictionaries) if labels is not None else None
        config = config_from_fairseq(family, settings, num_classes if rows is None else len(rows))
        model = get_family(family).build(config)
        ours = state_dict_from_fairseq(state, config, rows)
    except InteropError as err:
        raise InteropError(f"{source}: {err}") from None
    optional = ("head.",) if labels is None and family != "wav2vec2" else ()
    unfit = unfit_weights(model.state_dict(), ours, optional, lambda name: _fairseq_name(name, config))
    if unfit:
        defaulted = [key for key in SIZE_SETTINGS if settings.get(key) is None]
        raise InteropError(f"{source}: weights do not fit its config: {unfit}"
                           + (f"; its config lacks {defaulted}, which took fairseq's defaults" if defaulted else ""))
    model.load_state_dict(ours, strict=False)
    if settings.get("normalize"):
        logger.warning("%s: trained on waveforms standardised to zero mean and unit variance (fairseq's normalize); "
                       "audiossl does not standardise them: do so before extract_features or training", source)
    return model.eval()


def load_fairseq(path: str | os.PathLike, num_classes: int = 100) -> SpeechEncoder:
    """The audiossl model (eval mode) of a fairseq wav2vec 2.0 / HuBERT checkpoint or a unilm WavLM one.

    ``model.extract_features(wavs (B, S), lengths (B,))`` gives fairseq's hidden states: the encoder
    input, then each layer's output (the last with the final layer norm in pre-norm models). A head
    the file does not store (WavLM's) is new, with ``num_classes`` targets.
    """
    try:
        payload = fairseq_layout(read_fairseq(path))
    except InteropError as err:
        raise InteropError(f"{path}: {err}") from None
    if payload is None:
        raise InteropError(f"{path}: not a fairseq checkpoint (no 'model' weights with a 'cfg' or 'args', "
                           "nor s3prl's conversion of one)")
    return model_from_fairseq(payload, num_classes, str(path))


def fairseq_payload(model: SpeechEncoder) -> dict[str, Any]:
    """What :func:`save_fairseq` writes for ``model``: ``{"cfg", "model"}``, and fairseq's trainer keys
    for wav2vec 2.0 and HuBERT."""
    config = model.config
    cfg = config_to_fairseq(config)
    state = state_dict_to_fairseq(model.state_dict(), config)
    required = {"wav2vec2": "quantizer.vars", "hubert": "label_embs_concat"}.get(config.family)
    if required and required not in state:
        raise InteropError(f"fairseq's {config.family} checkpoints hold {required}; "
                           "the model has no pretraining parts")
    payload: dict[str, Any] = {"cfg": cfg, "model": state}
    if config.family != "wavlm":
        criterion = {"wav2vec2": "Wav2vecCriterion", "hubert": "HubertCriterion"}[config.family]
        history = {"criterion_name": criterion, "optimizer_name": "FairseqAdam", "lr_scheduler_state": {},
                   "num_updates": 0}
        payload |= {"args": None, "optimizer_history": [history],
                    "task_state": {}, "extra_state": {"train_iterator": {"epoch": 1, "iterations_in_epoch": 0}}}
    return payload


def save_fairseq(model: SpeechEncoder, path: str | os.PathLike) -> Path:
    """Write a wav2vec 2.0, HuBERT or WavLM ``model`` as a fairseq checkpoint; returns ``path``.

    wav2vec 2.0 and HuBERT get fairseq's trainer layout (``cfg`` with ``model``, ``task`` and
    ``criterion``; ``optimizer_history`` and ``extra_state`` as ``checkpoint_utils`` expects), WavLM
    unilm's ``{"cfg", "model"}`` without the head. fairseq itself also needs HuBERT's label dictionary
    (``dict.km.txt`` in the task's ``label_dir``) to build the model; :func:`load_fairseq` does not.
    """
    return write_payload(fairseq_payload(model), path)


def write_payload(payload: dict[str, Any], path: str | os.PathLike) -> Path:
    """``torch.save`` ``payload`` to ``path`` atomically, its directory made; returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path
