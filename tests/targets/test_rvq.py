"""MERT's targets: music features on the CNN's grid, the residual VQ, its autoencoder teacher, and the
pretraining entry point on 24 kHz clips with K codes per frame."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import soundfile
import torch

from audiossl.bin import kmeans as kmeans_bin
from audiossl.bin import pretrain as pretrain_bin
from audiossl.bin import rvq as rvq_bin
from audiossl.checkpoint import load_model
from audiossl.data.dataset import UtteranceDataset
from audiossl.data.kaldi_dir import DataDir, DataDirError, write_table
from audiossl.features.music import MusicFeatureError, MusicFeatureSource, chroma, cnn_frames, cqt_magnitude, log_mel
from audiossl.models.components import DEFAULT_CONV_LAYERS, FrontendConfig, build_frontend
from audiossl.nn.quantizer import ResidualVectorQuantizer
from audiossl.targets.labels import read_labels
from audiossl.targets.rvq import RvqAutoencoder, RvqConfig, RvqError, fit_rvq, load_frames


def chord_clip(seconds: float, root: float, rate: int = 24000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.1 * sum(np.sin(2 * np.pi * root * ratio * t) for ratio in (1, 1.26, 1.5))).astype(np.float32)


def music_dir(path, rate=24000, clips=6):
    audio = path / "audio"
    audio.mkdir(parents=True)
    wav_scp = {}
    for i in range(clips):
        name = f"clip{i}"
        soundfile.write(audio / f"{name}.wav", chord_clip(1.0 + 0.25 * i, 110 * 2 ** (i / 12), rate), rate)
        wav_scp[name] = str(audio / f"{name}.wav")
    DataDir({"wav.scp": wav_scp, "utt2spk": {u: u for u in wav_scp}}).write(path / "data")
    return path / "data"


def test_music_features_have_the_cnns_frame_count():
    cnn = build_frontend(FrontendConfig(conv_layers=DEFAULT_CONV_LAYERS, sample_rate=24000))
    for samples in (400, 719, 720, 24000, 30011):
        assert cnn_frames(samples) == int(cnn.num_frames(torch.tensor([samples]))[0])
    clip = chord_clip(1.0, 220)
    assert cqt_magnitude(clip, 24000, 84).shape == (74, 84)
    assert log_mel(clip, 24000).shape == (74, 128) and chroma(clip, 24000).shape == (74, 12)
    # A3, C#4 and E4 of the chord are its three strongest pitch classes
    assert set(np.argsort(chroma(clip, 24000)[30])[-3:]) == {9, 1, 4}
    with pytest.raises(MusicFeatureError, match="shorter than one 400-sample frame"):
        log_mel(clip[:399], 24000)


def test_residual_quantizer_refines_code_by_code_and_is_seeded():
    torch.manual_seed(0)
    x = torch.randn(2000, 8)
    errors = []
    for k in (1, 2, 4):
        quantizer = ResidualVectorQuantizer(k, 32, 8)
        for _ in range(30):
            quantized, codes, _ = quantizer(x, torch.Generator().manual_seed(1))
        quantizer.eval()
        quantized, codes, commitment = quantizer(x)
        assert codes.shape == (2000, k) and int(codes.max()) < 32
        errors.append(float(commitment))
    assert errors[0] > errors[1] > errors[2]
    a, b = (ResidualVectorQuantizer(2, 16, 8) for _ in range(2))
    assert torch.equal(a(x, torch.Generator().manual_seed(5))[1], b(x, torch.Generator().manual_seed(5))[1])


class IndexSource:
    """Utterances ``u00`` ... whose every frame holds the utterance's index."""

    def __init__(self, count: int, frames: int):
        self.utterances = [f"u{i:02d}" for i in range(count)]
        self.frames = frames

    def __call__(self, utt: str) -> np.ndarray:
        return np.full((self.frames, 2), float(utt[1:]), dtype=np.float32)


def test_a_frame_budget_takes_utterances_in_a_seeded_random_order():
    """Utterances were read in their sorted order: a budget of a fraction of the corpus took its first
    speakers or genres alone (ids sort by them), and the teacher learnt the codes of those."""
    read = [sorted(set(load_frames(IndexSource(20, 100), 500, seed)[:, 0].astype(int))) for seed in (0, 1)]
    assert read[0] == sorted(np.random.default_rng(0).permutation(20)[:5]) and read[0] != read[1]
    assert read[0] != list(range(5))
    assert len(load_frames(IndexSource(20, 100), 10_000, 0)) == 2000


def test_teacher_learns_saves_and_loads(tmp_path):
    rng = np.random.default_rng(0)
    frames = np.repeat(rng.standard_normal((40, 16)), 25, axis=0).astype(np.float32)  # 40 "notes" of 25 frames
    config = RvqConfig(input_dim=16, hidden=32, latent_dim=8, num_codebooks=3, codebook_size=16)
    first = fit_rvq(frames, config, updates=5, seed=0)
    teacher = fit_rvq(frames, config, updates=150, seed=0)
    assert teacher(torch.from_numpy(frames)[None])[1] < first(torch.from_numpy(frames)[None])[1]
    codes = teacher.codes(frames[:100])
    assert codes.shape == (100, 3) and codes.dtype == np.int64
    teacher.save(tmp_path / "teacher.safetensors")
    again = RvqAutoencoder.load(tmp_path / "teacher.safetensors")
    assert again.config == config and np.array_equal(again.codes(frames[:100]), codes)
    assert np.array_equal(fit_rvq(frames, config, updates=5, seed=0).codes(frames[:50]), first.codes(frames[:50]))
    (tmp_path / "other.safetensors").write_bytes(b"not a teacher")
    with pytest.raises(RvqError, match="other.safetensors"):
        RvqAutoencoder.load(tmp_path / "other.safetensors")


def test_a_full_disk_while_saving_a_teacher_keeps_the_earlier_one(tmp_path, monkeypatch):
    config = RvqConfig(input_dim=4, hidden=8, latent_dim=4, num_codebooks=2, codebook_size=4)
    path = tmp_path / "teacher.safetensors"
    RvqAutoencoder(config).save(path)
    before = path.read_bytes()

    def disk_full(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"\0" * 100)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("audiossl.targets.rvq.save_file", disk_full)
    with pytest.raises(OSError, match="No space left"):
        RvqAutoencoder(config).save(path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == [path.name]


def test_a_16khz_dir_is_resampled_for_a_24khz_model_with_a_note_or_refused(tmp_path, caplog):
    data = music_dir(tmp_path, rate=16000, clips=2)
    with caplog.at_level(logging.INFO):
        dataset = UtteranceDataset(data, "waveform", sample_rate=24000)
    assert "audio at 16000 Hz (utterance 'clip0'), the model takes 24000 Hz: resampled" in caplog.text
    _, samples, _ = dataset[0]
    assert len(samples) == 24000 and dataset.lengths[0] == 24000
    with pytest.raises(DataDirError, match="audio at 16000 Hz .* the model takes 24000 Hz"):
        UtteranceDataset(data, "waveform", sample_rate=24000, resample=False)



def test_sample_counts_of_a_dir_at_another_rate_are_scaled_to_the_models(tmp_path):
    """utt2num_samples counts samples at the audio's rate: read for a model of another rate, the lengths (which
    size batches and check frame labels) are the resampled ones, not the counts as they are."""
    data = music_dir(tmp_path, rate=16000, clips=2)
    counts = {utt: str(len(UtteranceDataset(data, "waveform", sample_rate=16000)[i][1]))
              for i, utt in enumerate(DataDir.read(data).utterances)}
    write_table(data / "utt2num_samples", counts)
    dataset = UtteranceDataset(data, "waveform", sample_rate=24000)
    assert dataset.lengths == [len(dataset[i][1]) for i in range(2)] == [int(c) * 3 // 2 for c in counts.values()]

def test_mert_pretrains_on_residual_vq_codes_and_k_means_of_log_mel_and_chroma(tmp_path, capsys):
    data = music_dir(tmp_path)
    teacher, labels = tmp_path / "teacher.safetensors", tmp_path / "codes.txt"
    assert rvq_bin.main(["fit", "--codebooks", "2", "--codebook-size", "16", "--hidden", "32", "--latent-dim", "8",
                         "--updates", "20", str(data), str(teacher)]) == 0
    assert rvq_bin.main(["apply", str(teacher), str(data), str(labels)]) == 0
    codes = read_labels(labels)
    source = MusicFeatureSource(data, "logmel")
    assert all(codes[u].shape == (len(source(u)), 2) for u in source.utterances)

    config = tmp_path / "mert.yaml"
    config.write_text("model: {family: mert, size: tiny, set: {cqt_bins: 84}}\n"
                      "trainer: {max_updates: 3, batch_seconds: 4, log_interval: 1, valid_interval: 3, "
                      "save_interval: 3, precision: fp32}\n")
    exp = tmp_path / "exp"
    args = ["--config", str(config), "--train-data", str(data), "--train-labels", str(labels)]
    assert pretrain_bin.main(args + [str(exp)]) == 0
    model = load_model(exp / "checkpoints" / "last.pt")
    assert model.sample_rate == 24000 and model.target_codebooks == 2

    capsys.readouterr()
    assert pretrain_bin.main(args + ["--set", "model.set.num_codebooks=3", str(tmp_path / "exp3")]) == 1
    assert f"{labels}: 2 codebook(s) per frame, the mert model predicts 3" in capsys.readouterr().err

    km, km_labels = tmp_path / "km.safetensors", tmp_path / "km.txt"
    assert kmeans_bin.main(["fit", "--num-clusters", "8", "--n-init", "1", "--music-features", "logmel_chroma",
                            "--utt-cmvn", str(data), str(km)]) == 0
    assert kmeans_bin.main(["apply", "--music-features", "logmel_chroma", "--utt-cmvn", str(km), str(data),
                            str(km_labels)]) == 0
    assert pretrain_bin.main(["--config", str(config), "--set", "model.set.num_codebooks=1",
                              "--set", "model.set.codebook_size=8", "--train-data", str(data),
                              "--train-labels", str(km_labels), str(tmp_path / "exp_v0")]) == 0
