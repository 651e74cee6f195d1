"""k-means targets: frame sampling, fitting, prediction, model files, and the CLI end to end."""
from __future__ import annotations

from pathlib import Path

import kaldiio
import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from sklearn.metrics import adjusted_rand_score

from audiossl.bin import kmeans as cli
from audiossl.data.kaldi_dir import DataDir, read_table, split_data_dir
from audiossl.features.kaldi import add_deltas
from audiossl.targets.kmeans import (KMeansError, KMeansModel, ModelLayerSource, ScpFeatureSource, apply_kmeans,
                                     parse_layer, sample_frames)
from audiossl.targets.labels import read_labels

FAST = dict(batch_size=1024, max_iter=20, n_init=3, max_no_improvement=20)


def blobs(seed: int, num_clusters: int = 6, dim: int = 39, frames: int = 3000):
    """Well separated Gaussian blobs: (frames, dim) float32 and their true cluster (frames,)."""
    rng = np.random.default_rng(seed)
    means = rng.normal(0.0, 8.0, (num_clusters, dim))
    truth = rng.integers(0, num_clusters, frames)
    return (means[truth] + rng.normal(0.0, 1.0, (frames, dim))).astype(np.float32), truth


class ArraySource:
    """A feature source over in-memory arrays."""

    def __init__(self, feats: dict[str, np.ndarray]):
        self.feats = feats
        self.utterances = sorted(feats)

    def __call__(self, utt: str) -> np.ndarray:
        return self.feats[utt]


def indexed_source(lengths) -> ArraySource:
    """Utterances whose single feature is the frame's global index (in utterance order)."""
    feats, start = {}, 0
    for i, n in enumerate(lengths):
        feats[f"utt{i:03d}"] = np.arange(start, start + n, dtype=np.float32)[:, None]
        start += n
    return ArraySource(feats)


def test_fit_recovers_blobs():
    frames, truth = blobs(0)
    model = KMeansModel.fit(frames, 6, seed=1, **FAST)
    assert model.centers.shape == (6, 39) and model.centers.dtype == torch.float32
    predicted = model.predict(frames)
    assert adjusted_rand_score(truth, predicted) > 0.99
    # Purity: every predicted cluster is (almost) one true cluster.
    for c in range(6):
        members = truth[predicted == c]
        assert len(members) and np.bincount(members).max() / len(members) > 0.99
    assert model.inertia(frames) == pytest.approx(39.0, rel=0.1)  # the noise variance per dim, summed


def test_fit_is_deterministic_and_checks_its_input():
    frames, _ = blobs(1, num_clusters=4, frames=800)
    a = KMeansModel.fit(frames, 4, seed=5, **FAST)
    b = KMeansModel.fit(frames, 4, seed=5, **FAST)
    assert torch.equal(a.centers, b.centers)
    with pytest.raises(KMeansError, match="cannot fit 900 clusters to 800 frames"):
        KMeansModel.fit(frames, 900, seed=0, **FAST)


def test_predict_is_the_nearest_center_in_batches():
    rng = np.random.default_rng(3)
    centers = rng.normal(0, 1, (17, 5)).astype(np.float32)
    feats = (rng.normal(0, 1, (1000, 5)) + 50.0).astype(np.float32)  # offset: cancellation in |x|^2 - 2xc
    model = KMeansModel(torch.from_numpy(centers + 50.0))
    dists = ((feats[:, None, :].astype(np.float64) - (centers + 50.0)[None].astype(np.float64)) ** 2).sum(-1)
    labels, sq = model.assign(feats, batch_frames=64)
    np.testing.assert_array_equal(labels, dists.argmin(1))
    np.testing.assert_allclose(sq, dists.min(1), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(model.predict(feats), labels)
    assert model.inertia(feats) == pytest.approx(dists.min(1).mean(), rel=1e-6)
    with pytest.raises(KMeansError, match="dimension 5"):
        model.predict(feats[:, :4])


def test_save_load_round_trip(tmp_path):
    frames, _ = blobs(2, num_clusters=5, dim=13, frames=1000)
    model = KMeansModel.fit(frames, 5, seed=0, **FAST)
    path = tmp_path / "km.safetensors"
    model.save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["km.safetensors"]
    assert torch.equal(load_file(str(path))["centers"], model.centers)  # a plain safetensors file
    loaded = KMeansModel.load(path)
    assert torch.equal(loaded.centers, model.centers)
    np.testing.assert_array_equal(loaded.predict(frames), model.predict(frames))


def test_load_rejects_other_files(tmp_path):
    pickled = tmp_path / "pickled.pt"
    torch.save({"centers": torch.zeros(3, 2)}, pickled)
    with pytest.raises(KMeansError, match="pickled.pt: not a safetensors file"):
        KMeansModel.load(pickled)
    from safetensors.torch import save_file
    other = tmp_path / "other.safetensors"
    save_file({"weight": torch.zeros(3, 2)}, str(other))
    with pytest.raises(KMeansError, match="not an audiossl k-means model"):
        KMeansModel.load(other)


def test_sample_frames_is_deterministic_and_bounded():
    source = indexed_source([50, 3, 0, 120, 77, 1, 249])  # 500 frames
    a = sample_frames(source, 100, seed=7)
    assert a.shape == (100, 1)
    np.testing.assert_array_equal(a, sample_frames(source, 100, seed=7))
    assert not np.array_equal(a, sample_frames(source, 100, seed=8))
    assert len(np.unique(a)) == 100  # no frame twice
    everything = sample_frames(source, 10_000, seed=7)
    np.testing.assert_array_equal(np.sort(everything[:, 0]), np.arange(500))
    assert sample_frames(source, 30, seed=0).shape == (30, 1)  # an utterance longer than the reservoir


def test_sample_frames_is_uniform():
    lengths = [7, 130, 1, 42, 300, 20, 95, 5, 250, 150]  # 1000 frames
    source = indexed_source(lengths)
    seeds, k = 400, 100
    counts = np.zeros(1000)
    for seed in range(seeds):
        counts[sample_frames(source, k, seed).astype(int)[:, 0]] += 1
    per_bin = counts.reshape(10, 100).sum(1)  # expected seeds * k / 10 = 4000, sd about 60
    assert np.abs(per_bin - seeds * k / 10).max() < 250
    assert counts.min() > 10 and counts.max() < 80  # every frame reachable (expected 40 each)


def test_sample_frames_errors():
    with pytest.raises(KMeansError, match="no frames"):
        sample_frames(indexed_source([0, 0]), 10, seed=0)
    source = ArraySource({"a": np.zeros((3, 4), np.float32), "b": np.zeros((3, 5), np.float32)})
    with pytest.raises(KMeansError, match="'b'.*dimension 5, expected 4"):
        sample_frames(source, 10, seed=0)
    source = ArraySource({"a": np.array([[0.0], [np.nan]], np.float32)})
    with pytest.raises(KMeansError, match="'a'.*NaN"):
        sample_frames(source, 10, seed=0)


def test_apply_kmeans_labels_every_frame():
    frames, _ = blobs(4, num_clusters=3, dim=8, frames=600)
    source = ArraySource({"u1": frames[:250], "u2": frames[250:251], "u3": frames[251:]})
    model = KMeansModel.fit(frames, 3, seed=0, **FAST)
    labels, inertia = apply_kmeans(model, source)
    assert list(labels) == ["u1", "u2", "u3"]
    np.testing.assert_array_equal(np.concatenate(list(labels.values())), model.predict(frames))
    assert inertia == pytest.approx(model.inertia(frames))


# --- features in a data dir, and the CLI ---------------------------------------------------

def write_mfcc_like_dir(root: Path, num_utts: int = 6, seed: int = 0) -> Path:
    """A data dir with utt2spk, feats.scp (13-dim blob features), utt2num_frames."""
    rng = np.random.default_rng(seed)
    means = rng.normal(0, 6.0, (4, 13))
    root.mkdir(parents=True, exist_ok=True)
    ark, scp = root / "feats.ark", root / "feats.scp"
    frames = {}
    with kaldiio.WriteHelper(f"ark,scp:{ark},{scp}") as writer:
        for utt in sorted(f"spk{i % 2}-utt{i}" for i in range(num_utts)):
            n = int(rng.integers(40, 120))
            states = np.repeat(rng.integers(0, 4, n // 10 + 1), 10)[:n]  # 10-frame "phones"
            writer(utt, (means[states] + rng.normal(0, 0.5, (n, 13))).astype(np.float32))
            frames[utt] = str(n)
    data = root / "data"
    DataDir({"utt2spk": {u: u.split("-")[0] for u in frames}, "feats.scp": read_table(scp),
             "utt2num_frames": frames}).write(data)
    return data


def test_scp_feature_source(tmp_path):
    data = write_mfcc_like_dir(tmp_path / "d")
    plain = ScpFeatureSource(data)
    source = ScpFeatureSource(DataDir.read(data), deltas=2)
    assert source.utterances == sorted(read_table(data / "utt2spk"))
    utt = source.utterances[0]
    base = kaldiio.load_mat(read_table(data / "feats.scp")[utt])
    np.testing.assert_array_equal(plain(utt), base)
    np.testing.assert_array_equal(source(utt), add_deltas(base, order=2))
    assert source(utt).shape == (len(base), 39) and source(utt).dtype == np.float32

    normalised = ScpFeatureSource(data, deltas=2, utt_cmvn=True)(utt)
    np.testing.assert_allclose(normalised[:, :13].mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(normalised[:, :13].std(0), 1.0, atol=1e-4)
    cmvn_first = (base - base.mean(0)) / base.std(0)
    np.testing.assert_allclose(normalised, add_deltas(cmvn_first, order=2), atol=1e-4)

    (data / "feats.scp").write_text("".join(line for line in (data / "feats.scp").read_text().splitlines(True)
                                            if not line.startswith("spk1-utt3 ")))
    with pytest.raises(KMeansError, match="'spk1-utt3'"):
        ScpFeatureSource(data)
    (data / "feats.scp").unlink()
    with pytest.raises(KMeansError, match="no feats.scp"):
        ScpFeatureSource(data)


def run_cli(capsys, *argv) -> tuple[int, str]:
    code = cli.main([str(a) for a in argv])
    return code, capsys.readouterr().err


def test_cli_fit_apply_in_jobs_merge(tmp_path, capsys):
    data = write_mfcc_like_dir(tmp_path / "d")
    model = tmp_path / "km.safetensors"
    code, err = run_cli(capsys, "fit", "--num-clusters", 4, "--max-frames", 300, "--seed", 3, "--deltas", 2,
                        "--batch-size", 128, "--max-iter", 20, "--n-init", 3, data, model)
    assert code == 0, err
    assert "sampled 300 frames of dimension 39" in err and "inertia" in err and "4 of 4 clusters used" in err
    assert KMeansModel.load(model).centers.shape == (4, 39)

    code, err = run_cli(capsys, "apply", "--deltas", 2, model, data, tmp_path / "all.txt")
    assert code == 0, err
    whole = read_labels(tmp_path / "all.txt")
    frames = {u: int(n) for u, n in read_table(data / "utt2num_frames").items()}
    assert {u: len(s) for u, s in whole.items()} == frames

    for job, part in enumerate(split_data_dir(DataDir.read(data), 2), 1):
        part.write(tmp_path / "split2utt" / str(job))
        code, err = run_cli(capsys, "apply", "--deltas", 2, model, tmp_path / "split2utt" / str(job),
                            tmp_path / f"labels.{job}.txt")
        assert code == 0, err
    code, err = run_cli(capsys, "merge", "--data-dir", data, "--utt2num-frames", data / "utt2num_frames",
                        tmp_path / "merged.txt", tmp_path / "labels.1.txt", tmp_path / "labels.2.txt")
    assert code == 0, err
    assert (tmp_path / "merged.txt").read_bytes() == (tmp_path / "all.txt").read_bytes()

    # A lost job: the merge names an utterance without labels.
    code, err = run_cli(capsys, "merge", "--data-dir", data, tmp_path / "partial.txt", tmp_path / "labels.1.txt")
    assert code == 1 and err.startswith("error: ") and "no labels for 3 utterance(s)" in err
    assert "'spk1-utt5'" in err and not (tmp_path / "partial.txt").exists()


def test_cli_errors(tmp_path, capsys):
    data = write_mfcc_like_dir(tmp_path / "d")
    model = tmp_path / "km.safetensors"
    assert run_cli(capsys, "fit", "--num-clusters", 3, "--deltas", 2, "--n-init", 1, "--max-iter", 5, data, model)[0] == 0
    code, err = run_cli(capsys, "apply", model, data, tmp_path / "x.txt")  # fit with deltas, applied without
    assert code == 1 and "error: utterance 'spk0-utt0': features have dimension 13, expected 39" in err
    code, err = run_cli(capsys, "apply", tmp_path / "missing.safetensors", data, tmp_path / "x.txt")
    assert code == 1 and "error: " in err and "missing.safetensors" in err
    code, err = run_cli(capsys, "fit", "--num-clusters", 5000, data, model)
    assert code == 1 and "error: cannot fit 5000 clusters" in err
    short = tmp_path / "short_frames"
    short.write_text((data / "utt2num_frames").read_text().replace("spk0-utt2 ", "spk0-utt2 1"))
    assert run_cli(capsys, "apply", "--deltas", 2, model, data, tmp_path / "l.txt")[0] == 0
    code, err = run_cli(capsys, "merge", "--utt2num-frames", short, tmp_path / "m.txt", tmp_path / "l.txt")
    assert code == 1 and "'spk0-utt2' has" in err and "m.txt" in err


def test_model_layer_source_reads_hidden_states_or_ctc_posteriors(tmp_path):
    """A layer of a CTC model's encoder, or its token posteriors ('posteriors'), per utterance of a data dir."""
    import soundfile

    from audiossl.models.ctc.factory import ctc_over_encoder
    from audiossl.models.wav2vec2 import Wav2Vec2Config, build_wav2vec2
    from audiossl.text.tokenizer import build_tokenizer

    torch.manual_seed(0)
    encoder = build_wav2vec2(Wav2Vec2Config.tiny()).encoder_only()
    ctc = ctc_over_encoder(encoder, build_tokenizer("char", ["AB C"], None), {}, copy_weights=True)
    wav = tmp_path / "a.wav"
    soundfile.write(wav, np.random.default_rng(0).normal(0, 0.1, 8000).astype(np.float32), 16000)
    DataDir({"wav.scp": {"u1": str(wav)}, "utt2spk": {"u1": "s"}}).write(tmp_path / "d")

    posteriors = ModelLayerSource(ctc, tmp_path / "d", parse_layer("posteriors"))("u1")
    with torch.no_grad():
        log_probs, frames = ctc.eval()(torch.from_numpy(soundfile.read(wav, dtype="float32")[0])[None], torch.tensor([8000]))
    assert posteriors.shape == (int(frames[0]), ctc.tokenizer.vocab_size)
    np.testing.assert_allclose(posteriors, log_probs[0].exp().numpy(), atol=1e-6)
    np.testing.assert_allclose(posteriors.sum(1), 1.0, atol=1e-5)
    hidden = ModelLayerSource(ctc, tmp_path / "d", parse_layer("-1"))("u1")
    assert hidden.shape == (int(frames[0]), ctc.hidden_sizes[-1])
    with pytest.raises(KMeansError, match="'posteriors' needs a CTC model, not a Wav2Vec2Model"):
        ModelLayerSource(encoder, tmp_path / "d", "posteriors")
    with pytest.raises(ValueError, match="an integer or 'posteriors', not 'top'"):
        parse_layer("top")
