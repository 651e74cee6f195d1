"""The encoder interface every pretraining family offers, on odd inputs a notebook user gives it."""
import pytest
import torch

from audiossl.errors import UserError
from audiossl.models.encoder import EncoderInputError
from audiossl.registry import get_family, named_configs, pretraining_families

# every family, and the other front end of those that offer one
MODELS = [(family, {}) for family in pretraining_families()] + [("hubert", {"frontend": "fbank"}),
                                                               ("best_rq", {"frontend": "waveform"})]


def tiny(family, args=None):
    torch.manual_seed(0)
    return get_family(family).build(named_configs(family)["tiny"](**(args or {}))).eval()


def batch(lengths=(16000, 9001)):
    wavs = torch.randn(len(lengths), max(lengths), generator=torch.Generator().manual_seed(1)) * 0.1
    for i, n in enumerate(lengths):
        wavs[i, n:] = 0.0
    return wavs, torch.tensor(lengths)


@pytest.mark.parametrize("family,args", MODELS, ids=lambda x: x if isinstance(x, str) else "-".join(x.values()))
def test_waveforms_of_any_float_dtype_are_computed_in_the_models(family, args):
    """soundfile's float64 samples, and a model on .double(), give the features of float32 ones."""
    model = tiny(family, args)
    wavs, lengths = batch()
    with torch.no_grad():
        expected, frames = model.extract_features(wavs, lengths)
        hidden, _ = model.extract_features(wavs.double(), lengths)
        doubled, double_frames = model.double().extract_features(wavs, lengths)
    assert hidden[-1].dtype == torch.float32 and doubled[-1].dtype == torch.float64
    assert double_frames.tolist() == frames.tolist()
    for ours, theirs in zip(hidden + doubled, expected + expected):
        torch.testing.assert_close(ours.float(), theirs, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("family,args", MODELS, ids=lambda x: x if isinstance(x, str) else "-".join(x.values()))
def test_a_model_on_half_gives_the_float_features_to_half_precision(family, args):
    """SSAMBA's scan mixed its float32 decay with a half model's inputs and failed (a CUDA machine without
    mamba-ssm runs the same scan); it now runs in float32 and gives the model's dtype."""
    model = tiny(family, args)
    wavs, lengths = batch()
    with torch.no_grad():
        expected, frames = model.extract_features(wavs, lengths)
        hidden, half_frames = model.half().extract_features(wavs, lengths)
    assert half_frames.tolist() == frames.tolist()
    for ours, theirs in zip(hidden, expected):
        assert ours.dtype == torch.float16
        for item, n in enumerate(frames.tolist()):
            error = (ours[item, :n].float() - theirs[item, :n]).abs().max()
            assert error <= 0.05 * theirs[item, :n].abs().max()


BAD_INPUTS = {
    "no waveform": (lambda w, n: (w[:0], n[:0]), r"an empty batch: waveforms of shape \(0, 16000\)"),
    "a list of waveforms": (lambda w, n: ([w[0], w[1, :9001]], n), r"got a list of 2: pad them into one batch"),
    "one waveform": (lambda w, n: (w[0], n[:1]), r"\(B, S\).*wav\[None\]"),
    "int16 samples": (lambda w, n: ((w * 32767).short(), n), r"torch.int16.*float samples in \[-1, 1\]"),
    "lengths of another batch": (lambda w, n: (w, n[:1]), r"lengths must be \(2,\).*shape \(1,\)"),
    "lengths in seconds": (lambda w, n: (w, n / 16000), r"lengths must be \(2,\) whole sample counts.*float"),
    "lengths past the samples": (lambda w, n: (w, n + 4000),
                                 r"\[20000, 13001\] of waveforms of 16000 samples.*1\.\.16000"),
    "an empty item": (lambda w, n: (w, torch.tensor([16000, 0])), r"\[16000, 0\].*1\.\.16000"),
    "an item under a frame": (lambda w, n: (w, torch.tensor([16000, 100])),
                              r"items \[1\] of \[100\] samples are too short"),
}


@pytest.mark.parametrize("family,args", [("hubert", {}), ("tera", {}), ("ssamba", {})],
                         ids=["hubert", "tera", "ssamba"])
@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_waveforms_and_lengths_that_do_not_fit_are_named(family, args, case):
    """A batch the model cannot take is refused naming it, where a waveform model gave frame counts past its
    output for lengths past the samples, or one length for a batch of two, and others failed deep inside."""
    model = tiny(family, args)
    change, message = BAD_INPUTS[case]
    with torch.no_grad(), pytest.raises(EncoderInputError, match=message) as caught:
        model.extract_features(*change(*batch()))
    assert isinstance(caught.value, UserError)


def test_lengths_left_out_are_every_item_whole():
    model = tiny("hubert")
    wavs, _ = batch((16000, 16000))
    with torch.no_grad():
        hidden, frames = model.extract_features(wavs)
        expected, expected_frames = model.extract_features(wavs, torch.tensor([16000, 16000]))
    assert frames.tolist() == expected_frames.tolist() == [49, 49]
    torch.testing.assert_close(hidden[-1], expected[-1], rtol=0, atol=0)


@pytest.mark.parametrize("family", ["hubert", "ssamba"])
def test_encode_refuses_a_layer_count_the_encoder_does_not_have(family):
    """num_layers=-1 ran all but the last layer and 99 every layer, each without a word."""
    model = tiny(family)
    inputs, lengths = model.inputs_from_waveforms(*batch())
    layers = len(model.hidden_sizes) - 1
    with torch.no_grad():
        assert len(model.encode(inputs, lengths, num_layers=0)[0]) == 1
        for wrong in (-1, layers + 1):
            with pytest.raises(EncoderInputError, match=f"cannot run {wrong} layers of a {layers}-layer encoder"):
                model.encode(inputs, lengths, num_layers=wrong)


def test_transcribe_classify_and_embed_take_waveforms_as_extract_features():
    """A CTC or utterance model's waveform methods went straight to the front end: float64 samples failed
    there, and for lengths past the samples classify and embed pooled over frames past their output, silently."""
    from audiossl.models.ctc.config import CtcConfig
    from audiossl.models.hubert import HubertConfig
    from audiossl.models.utterance import HeadConfig, UtteranceConfig
    from audiossl.text.tokenizer import build_tokenizer

    tokenizer = build_tokenizer("char", ["AB"])
    encoder = HubertConfig.tiny().to_dict()
    ctc = get_family("ctc").build(CtcConfig(encoder_family="hubert", encoder=encoder, tokenizer=tokenizer.to_dict(),
                                            vocab_size=tokenizer.vocab_size)).eval()
    utterance = get_family("utterance").build(UtteranceConfig(
        upstream_family="hubert", upstream=encoder, head=HeadConfig(kind="linear", num_classes=3))).eval()
    wavs, lengths = batch()
    with torch.no_grad():
        assert ctc.transcribe(wavs.double(), lengths) == ctc.transcribe(wavs, lengths)
        torch.testing.assert_close(utterance.classify(wavs.double(), lengths), utterance.classify(wavs, lengths))
        torch.testing.assert_close(utterance.embed(wavs.double(), lengths), utterance.embed(wavs, lengths))
        for method in (ctc.transcribe, utterance.classify, utterance.embed):
            with pytest.raises(EncoderInputError, match="of waveforms of 16000 samples"):
                method(wavs, lengths + 4000)


def test_a_model_with_a_head_over_its_layers_says_to_truncate_its_encoder():
    """truncated and with_layer_drop of a CTC or utterance model raised a NotImplementedError without a word."""
    from audiossl.models.hubert import HubertConfig
    from audiossl.models.utterance import HeadConfig, UtteranceConfig

    config = UtteranceConfig(upstream_family="hubert", upstream=HubertConfig.tiny().to_dict(),
                             head=HeadConfig(kind="linear", num_classes=3))
    model = get_family("utterance").build(config)
    with pytest.raises(UserError, match="UtteranceModel keeps the layers its head was trained on: truncate its "
                                        r"encoder_only\(\)"):
        model.truncated(1)
    with pytest.raises(UserError, match=r"set it on its encoder_only\(\)"):
        model.with_layer_drop(0.1)
    assert len(model.encoder_only().truncated(1).hidden_sizes) == 2


def test_a_fbank_model_says_its_waveforms_get_no_gradient():
    """Waveforms that want a gradient (saliency, adversarial examples) failed in the fbank extractor's
    in-place arithmetic with "functions with out=... arguments don't support automatic differentiation"."""
    wavs, lengths = batch()
    wavs.requires_grad_(True)
    hidden, _ = tiny("hubert").extract_features(wavs, lengths)
    hidden[-1].sum().backward()
    assert wavs.grad is not None and bool(wavs.grad.abs().sum() > 0)
    model = tiny("best_rq")
    with pytest.raises(EncoderInputError, match="BestRqModel takes Kaldi fbank, computed without gradients"):
        model.extract_features(wavs, lengths)
    with torch.no_grad():
        model.extract_features(wavs, lengths)
    inputs, input_lengths = model.inputs_from_waveforms(wavs.detach(), lengths)
    inputs.requires_grad_(True)
    model.encode(inputs, input_lengths)[0][-1].sum().backward()
    assert inputs.grad is not None
