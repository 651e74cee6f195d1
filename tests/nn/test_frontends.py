import pytest
import torch
import torchaudio

from audiossl.nn.frontends import (
    ConvBlock,
    ConvWaveformEncoder,
    FbankSubsampler,
    MaskedGroupNorm,
    conv_windows,
    fbank_num_frames,
    reverse_valid,
    scale_gradient,
    waveform_to_fbank,
)

DEFAULT_LAYERS = [(16, 10, 5)] + [(16, 3, 2)] * 4 + [(16, 2, 2)] * 2


def conv_encoder(mode="default", channels=16):
    blocks, in_ch = [], 1
    for i, (_, k, s) in enumerate(DEFAULT_LAYERS):
        norm = "layer" if mode == "layer_norm" else ("group" if i == 0 else None)
        blocks.append(ConvBlock(in_ch, channels, k, s, bias=False, norm=norm))
        in_ch = channels
    return ConvWaveformEncoder(blocks)


@pytest.mark.parametrize("num_samples", [400, 401, 719, 720, 721, 16000, 16399, 23456])
def test_conv_encoder_frame_count(num_samples):
    torch.manual_seed(0)
    enc = conv_encoder()
    assert enc.frame_rate_hz == 50 and enc.input_kind == "waveform"
    feats, lengths = enc(torch.randn(1, num_samples), torch.tensor([num_samples]))
    expected = (num_samples - 400) // 320 + 1
    assert feats.shape == (1, expected, 16)
    assert lengths.tolist() == [expected]
    assert enc.num_frames(torch.tensor([num_samples])).tolist() == [expected]


def test_fbank_frames_equal_conv_frames_and_mfcc_20ms_for_many_lengths():
    torch.manual_seed(0)
    enc = conv_encoder()
    sub = FbankSubsampler(80, 8, 0)
    samples = torch.arange(400, 400 + 5 * 320 + 1)
    samples = torch.cat([samples, torch.randint(400, 200000, (200,))])
    fbank_frames = fbank_num_frames(samples)
    assert torch.equal(fbank_frames, 1 + (samples - 400) // 160)
    conv_frames = enc.num_frames(samples)
    assert torch.equal(sub.num_frames(fbank_frames), conv_frames)
    assert torch.equal(conv_frames, 1 + (samples - 400) // 320)
    # the same counts as real Kaldi features: fbank at 10 ms, MFCC at 20 ms shift
    for s in [400, 559, 560, 719, 720, 879, 16000, 16321]:
        wav = torch.randn(1, s)
        fb = torchaudio.compliance.kaldi.fbank(wav, num_mel_bins=80, dither=0.0)
        mfcc = torchaudio.compliance.kaldi.mfcc(wav, frame_shift=20.0, dither=0.0)
        assert fb.shape[0] == int(fbank_num_frames(torch.tensor(s)))
        feats, _ = sub(fb[None], torch.tensor([fb.shape[0]]))
        assert feats.shape[1] == mfcc.shape[0] == int(enc.num_frames(torch.tensor([s])))


@pytest.mark.parametrize("mode", ["default", "layer_norm"])
def test_conv_encoder_padding_invariance(mode):
    torch.manual_seed(0)
    enc = conv_encoder(mode).eval()
    short, long = torch.randn(5000), torch.randn(9000)
    batch = torch.zeros(2, 9000)
    batch[0, :5000] = short
    batch[0, 5000:] = 7.0  # garbage in the padding must not matter
    batch[1] = long
    feats, lengths = enc(batch, torch.tensor([5000, 9000]))
    alone, alone_len = enc(short[None], torch.tensor([5000]))
    n = int(alone_len)
    assert lengths.tolist() == [n, int(enc.num_frames(torch.tensor(9000)))]
    torch.testing.assert_close(feats[0, :n], alone[0], atol=1e-5, rtol=1e-4)
    assert (feats[0, n:] == 0).all()


@pytest.mark.parametrize("extra", [0, 2])
def test_fbank_subsampler_padding_invariance_and_normalisation(extra):
    torch.manual_seed(0)
    sub = FbankSubsampler(80, 12, extra).eval()
    short = torch.randn(33, 80) * 3 + 10
    batch = torch.full((2, 60, 80), 100.0)
    batch[0, :33] = short
    batch[1] = torch.randn(60, 80)
    feats, lengths = sub(batch, torch.tensor([33, 60]))
    assert lengths.tolist() == [17, 30] and feats.shape == (2, 30, 12)
    alone, _ = sub(short[None], torch.tensor([33]))
    torch.testing.assert_close(feats[0, :17], alone[0], atol=1e-5, rtol=1e-4)
    assert (feats[0, 17:] == 0).all()
    # per-utterance normalisation: an affine change of the input fbank does not matter
    shifted, _ = sub(short[None] * 2.0 - 5.0, torch.tensor([33]))
    torch.testing.assert_close(shifted, alone, atol=1e-4, rtol=1e-4)


def test_waveform_to_fbank_matches_kaldi_per_item():
    torch.manual_seed(0)
    wavs = torch.rand(3, 8000) * 0.2 - 0.1
    lengths = torch.tensor([8000, 4321, 300])
    fbank, frames = waveform_to_fbank(wavs, lengths)
    assert frames.tolist() == [48, 25, 0]
    assert fbank.shape == (3, 48, 80)
    ref = torchaudio.compliance.kaldi.fbank(wavs[1:2, :4321] * 32768, num_mel_bins=80, dither=0.0)
    torch.testing.assert_close(fbank[1, :25], ref)
    assert (fbank[1, 25:] == 0).all() and (fbank[2] == 0).all()


@pytest.mark.parametrize("bias", [False, True])
def test_folded_group_norm_equals_group_norm_of_the_conv_over_valid_steps(bias):
    torch.manual_seed(0)
    conv = torch.nn.Conv1d(1, 6, 10, stride=5, bias=bias).double()
    norm = MaskedGroupNorm(6).double()
    with torch.no_grad():
        norm.weight.uniform_(0.5, 2.0)
        norm.bias.uniform_(-1.0, 1.0)
    wavs = torch.randn(2, 400, dtype=torch.float64) + 0.3
    lengths = torch.tensor([400, 250])
    frames = (400 - 10) // 5 + 1
    windows = conv_windows(wavs[..., None], 10, 5, frames)
    out = norm.normalized_conv(windows, conv.weight.reshape(6, -1), conv.bias, (lengths - 10) // 5 + 1)
    for i, length in enumerate(lengths.tolist()):
        valid = (length - 10) // 5 + 1
        ref = torch.nn.functional.group_norm(conv(wavs[i : i + 1, None, :length]), 6, norm.weight, norm.bias)
        torch.testing.assert_close(out[i, :valid], ref[0].t())
    out[0].sum().backward()
    assert bias is False or torch.allclose(conv.bias.grad, torch.zeros(6, dtype=torch.float64), atol=1e-9)



def test_first_two_blocks_run_fused_as_they_run_one_by_one():
    """The fused first two blocks (never holding the first's output) equal the blocks run in turn,
    on a padded batch, in values and parameter gradients."""
    torch.manual_seed(0)
    enc = conv_encoder().double()
    wavs, lengths = torch.randn(3, 5000, dtype=torch.float64), torch.tensor([5000, 3111, 800])
    assert enc._fuses_first_two_blocks(wavs[..., None])
    feats, frames = enc(wavs, lengths)
    grads = torch.autograd.grad(feats.square().sum(), list(enc.parameters()))

    def one_by_one(inputs, lengths):
        x = torch.nn.functional.pad(inputs, (0, enc.padded_samples(inputs.shape[1]) - inputs.shape[1]))[..., None]
        for block in enc.blocks:
            x, lengths = block(x, lengths)
        return x[:, : feats.shape[1]].masked_fill(torch.arange(feats.shape[1])[None, :, None] >= lengths[:, None, None], 0)

    ref = one_by_one(wavs.masked_fill(torch.arange(5000)[None] >= lengths[:, None], 0.0), lengths)
    torch.testing.assert_close(feats, ref)
    for ours, theirs in zip(grads, torch.autograd.grad(ref.square().sum(), list(enc.parameters()))):
        torch.testing.assert_close(ours, theirs)
    assert frames.tolist() == enc.num_frames(lengths).tolist()

def test_scale_gradient():
    x = torch.ones(3, requires_grad=True)
    y = scale_gradient(x, 0.1)
    assert torch.equal(y, x)
    y.sum().backward()
    torch.testing.assert_close(x.grad, torch.full((3,), 0.1))


def test_conv_block_rejects_unknown_norm():
    with pytest.raises(ValueError, match="norm"):
        ConvBlock(1, 4, 3, 1, bias=False, norm="batch")


def test_reverse_valid_reverses_each_item_within_its_length():
    frames = torch.arange(10.0).view(2, 5)[..., None, None].expand(2, 5, 2, 3)
    out = reverse_valid(frames, torch.tensor([5, 3]))
    assert out[0, :, 0, 0].tolist() == [4, 3, 2, 1, 0] and out[1, :, 1, 2].tolist() == [7, 6, 5, 8, 9]


def test_waveform_to_fbank_in_threads_side_by_side_gives_each_item_its_own_fbank():
    """Every thread shared one extractor, whose scratch buffers the others overwrote mid-computation: a fbank
    model's features in a thread pool or a demo server were other utterances' spectra, silently."""
    from concurrent.futures import ThreadPoolExecutor

    generator = torch.Generator().manual_seed(0)
    wavs = [torch.randn(1, 8000 * (1 + i % 3), generator=generator) * 0.1 for i in range(24)]
    expected = [waveform_to_fbank(w, torch.tensor([w.shape[1]]))[0] for w in wavs]
    with ThreadPoolExecutor(4) as pool:
        for _ in range(3):
            got = list(pool.map(lambda w: waveform_to_fbank(w, torch.tensor([w.shape[1]]))[0], wavs))
            assert all(torch.equal(a, b) for a, b in zip(got, expected))
