"""k-means targets: frame shards, fitting (and its resume), prediction, model files, and the CLI end to end."""
from __future__ import annotations

import os
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
from audiossl.targets.kmeans import (FrameShards, KMeansError, KMeansModel, ModelLayerSource, ScpFeatureSource,
                                     apply_kmeans, fit_kmeans, lloyd_pass, parse_layer, write_frame_shards)
from audiossl.targets.labels import read_labels



def fit(frames: np.ndarray, num_clusters: int, seed: int, **options) -> KMeansModel:
    return fit_kmeans(FrameShards.of(frames), num_clusters, seed, **options)


def blobs(seed: int, num_clusters: int = 6, dim: int = 39, frames: int = 3000):
    """Well separated Gaussian blobs: (frames, dim) float32 and their true cluster (frames,)."""
    rng = np.random.default_rng(seed)
    means = rng.normal(0.0, 8.0, (num_clusters, dim))
    truth = rng.integers(0, num_clusters, frames)
    return (means[truth] + rng.normal(0.0, 1.0, (frames, dim))).astype(np.float32), truth


class ArraySource:
    """A feature source over in-memory arrays."""

    def __init__(self, feats: dict[str, np.ndarray], identity: dict | None = None):
        self.feats = feats
        self.utterances = sorted(feats)
        self.settings = {}
        self.identity = identity or {}

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
    model = fit(frames, 6, seed=1)
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
    a = fit(frames, 4, seed=5, n_init=3)
    b = fit(frames, 4, seed=5, n_init=3)
    assert torch.equal(a.centers, b.centers)
    with pytest.raises(KMeansError, match="cannot fit 900 clusters to 800 frames"):
        fit(frames, 900, seed=0)


def overlapping_frames(seed: int, frames: int = 6000, dim: int = 16) -> np.ndarray:
    """Frames without clear clusters: a mixture of 60 wide Gaussians with an offset, (frames, dim) float32."""
    rng = np.random.default_rng(seed)
    means = rng.normal(0.0, 2.0, (60, dim)) + 10.0
    return (means[rng.integers(0, 60, frames)] + rng.normal(0.0, 1.0, (frames, dim))).astype(np.float32)


def test_fit_is_as_good_as_fairseqs_minibatch_kmeans():
    """Inertia no worse than scikit-learn's MiniBatchKMeans with fairseq's settings (bench/kmeans.py: speed)."""
    from sklearn.cluster import MiniBatchKMeans

    frames = overlapping_frames(0)
    ours = fit(frames, 40, seed=0, init_frames=2000)
    theirs = MiniBatchKMeans(n_clusters=40, batch_size=1000, n_init=20, max_iter=100, max_no_improvement=100,
                             tol=0.0, reassignment_ratio=0.0, random_state=0).fit(frames)
    reference = KMeansModel(torch.from_numpy(theirs.cluster_centers_.astype(np.float32)))
    assert ours.inertia(frames) <= 1.01 * reference.inertia(frames)


def test_fit_streams_shards_and_resumes_where_it_stopped(tmp_path):
    frames = overlapping_frames(1, frames=3000)
    paths = []
    for i, part in enumerate(np.array_split(frames, 3)):
        paths.append(tmp_path / f"frames.{i}.npy")
        np.save(paths[-1], part)
    shards = FrameShards(paths)
    assert (shards.num_frames, shards.dim) == (3000, 16)
    np.testing.assert_array_equal(np.concatenate(list(shards.blocks(block_frames=128))), frames)
    straight = fit_kmeans(shards, 20, seed=2, init_frames=500, max_passes=4, tol=0.0)
    in_memory = fit(frames, 20, seed=2, init_frames=500, max_passes=4, tol=0.0)
    # shards or one array: the same fit, up to the rounding of per-block float32 sums
    torch.testing.assert_close(straight.centers, in_memory.centers, rtol=0, atol=1e-4)

    state = tmp_path / "fit_state.pt"
    messages: list[str] = []
    fit_kmeans(shards, 20, seed=2, init_frames=500, max_passes=2, tol=0.0, state_path=state)  # "killed" after 2
    resumed = fit_kmeans(shards, 20, seed=2, init_frames=500, max_passes=4, tol=0.0, state_path=state,
                         log=messages.append)
    assert [m.split(":")[0] for m in messages] == ["pass 3", "pass 4"]
    assert torch.equal(resumed.centers, straight.centers)
    with pytest.raises(KMeansError, match="fit_state.pt: the saved state of a different fit"):
        fit_kmeans(shards, 21, seed=2, state_path=state)

    truncated = tmp_path / "frames.2.npy"
    truncated.write_bytes(truncated.read_bytes()[:-64])
    with pytest.raises(KMeansError, match="frames.2.npy: ends after .* values"):
        list(FrameShards(paths).blocks())


def test_empty_clusters_are_reseeded_on_the_farthest_frames():
    frames = np.concatenate([np.zeros((50, 2)), np.full((1, 2), 100.0)]).astype(np.float32)
    centers = torch.tensor([[0.0, 0.0], [-500.0, -500.0]])   # the second center wins no frame
    step = lloyd_pass(iter([frames]), centers)
    assert step.empty == 1 and step.centers[1].tolist() == [100.0, 100.0]


def test_predict_is_the_nearest_center_in_batches():
    rng = np.random.default_rng(3)
    centers = rng.normal(0, 1, (17, 5)).astype(np.float32)
    feats = (rng.normal(0, 1, (1000, 5)) + 50.0).astype(np.float32)  # offset: cancellation in |x|^2 - 2xc
    model = KMeansModel(torch.from_numpy(centers + 50.0))
    dists = ((feats[:, None, :].astype(np.float64) - (centers + 50.0)[None].astype(np.float64)) ** 2).sum(-1)
    labels, sq = model.assign(feats, block_frames=64)
    np.testing.assert_array_equal(labels, dists.argmin(1))
    np.testing.assert_allclose(sq, dists.min(1), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(model.predict(feats), labels)
    assert model.inertia(feats) == pytest.approx(dists.min(1).mean(), rel=1e-6)
    with pytest.raises(KMeansError, match="dimension 5"):
        model.predict(feats[:, :4])


def test_save_load_round_trip(tmp_path):
    frames, _ = blobs(2, num_clusters=5, dim=13, frames=1000)
    model = fit(frames, 5, seed=0)
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


def test_frame_shards_take_random_utterances_up_to_a_budget_and_resume(tmp_path):
    source = indexed_source([50, 3, 0, 20, 77, 1, 49, 30, 60, 40, 70, 100])  # 500 frames
    shards = write_frame_shards(source, tmp_path / "a", max_frames=300, seed=3, shard_frames=40)
    frames = np.concatenate(list(shards.blocks()))[:, 0]
    assert shards.num_frames == 300 and len(np.unique(frames)) == 300
    assert len(shards.parts) >= 3 and all(size >= 40 for size in shards.sizes[:-1])   # a shard closes at 40
    listed = [line.split() for p in shards.parts for line in p.with_suffix(".utts").read_text().splitlines()]
    assert sum(int(n) for _, n in listed) == 300
    assert [u for u, _ in listed] != sorted(u for u, _ in listed)   # a random order of utterances
    again = write_frame_shards(source, tmp_path / "b", max_frames=300, seed=3, shard_frames=40)
    np.testing.assert_array_equal(np.concatenate(list(again.blocks())), np.concatenate(list(shards.blocks())))

    # A run killed after its first shard continues with the next utterance.
    for p in shards.parts[1:]:
        p.unlink()
        p.with_suffix(".utts").unlink()
    resumed = write_frame_shards(source, tmp_path / "a", max_frames=300, seed=3, shard_frames=40)
    np.testing.assert_array_equal(np.concatenate(list(resumed.blocks())), np.concatenate(list(again.blocks())))
    messages: list[str] = []
    reordered = write_frame_shards(source, tmp_path / "a", max_frames=300, seed=8, shard_frames=40,
                                   log=messages.append)
    assert len(messages) == 1 and messages[0].startswith(
        f"{tmp_path / 'a'}: frames made again, their settings or inputs changed: seed: 3 -> 8; utterances: '")
    other_order = write_frame_shards(source, tmp_path / "d", max_frames=300, seed=8, shard_frames=40)
    np.testing.assert_array_equal(np.concatenate(list(reordered.blocks())), np.concatenate(list(other_order.blocks())))

    everything = write_frame_shards(source, tmp_path / "c", max_frames=10_000, seed=0)
    np.testing.assert_array_equal(np.sort(np.concatenate(list(everything.blocks()))[:, 0]), np.arange(500))


def test_frame_shards_of_other_settings_or_inputs_are_made_again(tmp_path):
    """Leftover shards of another --deltas, --utt-cmvn, --max-frames or feats.scp are not reused."""
    data = write_mfcc_like_dir(tmp_path / "d")
    work = tmp_path / "km.work"
    messages: list[str] = []

    def shards(**options):
        messages.clear()
        settings = {"max_frames": 200, **options}
        source = ScpFeatureSource(data, deltas=settings.pop("deltas", 0), utt_cmvn=settings.pop("utt_cmvn", False))
        return write_frame_shards(source, work, seed=0, shard_frames=50, log=messages.append, **settings)

    assert shards().dim == 13 and messages == []
    (work / "fit_state.pt").write_bytes(b"a fit of these frames")
    assert shards().dim == 13 and messages == [] and (work / "fit_state.pt").exists()   # the same: kept
    assert shards(deltas=2).dim == 39
    assert messages == [f"{work}: frames made again, their settings or inputs changed: source.deltas: 0 -> 2"]
    assert not (work / "fit_state.pt").exists()   # a fit of other frames goes with them
    normalised = shards(deltas=2, utt_cmvn=True)
    assert "source.utt_cmvn: False -> True" in messages[0]
    assert abs(float(np.concatenate(list(normalised.blocks()))[:, :13].mean())) < 0.2
    assert shards(deltas=2, utt_cmvn=True, max_frames=120).num_frames == 120
    assert "max_frames: 200 -> 120" in messages[0]

    ark = tmp_path / "d" / "feats.ark"   # features written again (same size), or another feats.scp
    ark.write_bytes(ark.read_bytes())
    os.utime(ark, ns=(1, 1))   # whatever the clock's resolution
    shards(deltas=2, utt_cmvn=True, max_frames=120)
    assert f"source.arks.{ark}: [" in messages[0]
    (data / "feats.scp").write_text((data / "feats.scp").read_text().replace(str(ark), f"{tmp_path}/d/../d/feats.ark"))
    shards(deltas=2, utt_cmvn=True, max_frames=120)
    assert "source.feats_scp: " in messages[0]

    (work / "shards.json").unlink()   # shards of an earlier audiossl, without a record
    shards(deltas=2, utt_cmvn=True, max_frames=120)
    assert messages == [f"{work}: frames made again, the shards there have no record of their settings"]


def test_a_fit_stopped_after_its_last_pass_writes_the_same_model_on_rerun(tmp_path):
    shards = FrameShards.of(overlapping_frames(2, frames=2000))
    options = dict(num_clusters=10, seed=0, init_frames=500, max_passes=20, tol=0.05)
    straight = fit_kmeans(shards, **options)
    messages: list[str] = []
    stopped = fit_kmeans(shards, state_path=tmp_path / "fit_state.pt", log=messages.append, **options)
    passes = [m for m in messages if m.startswith("pass ")]
    assert 1 < len(passes) < 20   # it converged before max_passes
    messages.clear()
    rerun = fit_kmeans(shards, state_path=tmp_path / "fit_state.pt", log=messages.append, **options)
    assert messages == [] and torch.equal(rerun.centers, stopped.centers)
    assert torch.equal(rerun.centers, straight.centers)


def test_frame_shards_sample_is_uniform():
    shards = FrameShards([np.arange(start, start + n, dtype=np.float32)[:, None]
                          for start, n in ((0, 300), (300, 1), (301, 699))])
    counts = np.zeros(1000)
    for seed in range(400):
        sample = shards.sample(100, seed)[:, 0].astype(int)
        assert len(np.unique(sample)) == 100
        counts[sample] += 1
    per_bin = counts.reshape(10, 100).sum(1)  # expected 4000 each, sd about 60
    assert np.abs(per_bin - 4000).max() < 250 and counts.min() > 10


def test_frame_shards_errors(tmp_path):
    with pytest.raises(KMeansError, match="no frames"):
        write_frame_shards(indexed_source([0, 0]), tmp_path / "a", 10, seed=0)
    source = ArraySource({"a": np.zeros((3, 4), np.float32), "b": np.zeros((3, 5), np.float32)})
    with pytest.raises(KMeansError, match="'[ab]'.*dimension [45], expected [45]"):
        write_frame_shards(source, tmp_path / "b", 10, seed=0)
    source = ArraySource({"a": np.array([[0.0], [np.nan]], np.float32)})
    with pytest.raises(KMeansError, match="'a'.*NaN"):
        write_frame_shards(source, tmp_path / "c", 10, seed=0)
    np.save(tmp_path / "f64.npy", np.zeros((3, 2)))
    with pytest.raises(KMeansError, match="f64.npy: a shard is C-order float32"):
        FrameShards([tmp_path / "f64.npy"])


def test_apply_kmeans_labels_every_frame():
    frames, _ = blobs(4, num_clusters=3, dim=8, frames=600)
    source = ArraySource({"u1": frames[:250], "u2": frames[250:251], "u3": frames[251:]})
    model = fit(frames, 3, seed=0)
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
                        "--n-init", 3, "--shard-frames", 100, data, model)
    assert code == 0, err
    assert "300 frames of dimension 39 in 2 shard(s)" in err and "inertia" in err and "4 of 4 clusters used" in err
    assert "seeding 3/3" in err and "pass 1: inertia" in err
    assert not Path(f"{model}.work").exists()   # shards and fit state go once the model is written
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
    assert run_cli(capsys, "fit", "--num-clusters", 3, "--deltas", 2, "--max-passes", 2, data, model)[0] == 0
    code, err = run_cli(capsys, "apply", model, data, tmp_path / "x.txt")  # fit with deltas, applied without
    assert code == 1 and "was fit on other features than these (deltas: 2 then, 0 now)" in err
    code, err = run_cli(capsys, "apply", tmp_path / "missing.safetensors", data, tmp_path / "x.txt")
    assert code == 1 and "error: " in err and "missing.safetensors" in err
    code, err = run_cli(capsys, "fit", "--num-clusters", 5000, data, model)
    assert code == 1 and "error: cannot fit 5000 clusters" in err
    # Fewer frames sampled for the seedings than clusters: centers seeded on repeated frames, or a RuntimeError
    # where more clusters came out empty than the sample held frames to re-seed them on.
    code, err = run_cli(capsys, "fit", "--num-clusters", 20, "--init-frames", 10, data, model)
    assert code == 1 and "error: cannot seed 20 clusters on a sample of 10 frames (init frames)" in err
    short = tmp_path / "short_frames"
    short.write_text((data / "utt2num_frames").read_text().replace("spk0-utt2 ", "spk0-utt2 1"))
    assert run_cli(capsys, "apply", "--deltas", 2, model, data, tmp_path / "l.txt")[0] == 0
    code, err = run_cli(capsys, "merge", "--utt2num-frames", short, tmp_path / "m.txt", tmp_path / "l.txt")
    assert code == 1 and "'spk0-utt2' has" in err and "m.txt" in err


def test_apply_refuses_features_of_other_settings_than_the_fit_s(tmp_path, capsys):
    """Fit with --utt-cmvn and applied without it (or a layer left at its default), the features have the
    model's dimension: every frame was labelled, each utterance's levels and tilt left in, without a word."""
    data = write_mfcc_like_dir(tmp_path / "d")
    model = tmp_path / "km.safetensors"
    assert run_cli(capsys, "fit", "--num-clusters", 3, "--utt-cmvn", "--max-passes", 2, data, model)[0] == 0
    assert KMeansModel.load(model).features == {"source": "feats.scp", "deltas": 0, "utt_cmvn": True}
    for copy in range(4):   # the record keeps a model's file the same, byte for byte, for the same centers
        KMeansModel.load(model).save(tmp_path / "copy.safetensors")
        assert (tmp_path / "copy.safetensors").read_bytes() == model.read_bytes()
    code, err = run_cli(capsys, "apply", model, data, tmp_path / "x.txt")
    assert code == 1 and f"error: {model} was fit on other features than these (utt_cmvn: True then, False now)" in err
    assert not (tmp_path / "x.txt").exists()
    assert run_cli(capsys, "apply", "--utt-cmvn", model, data, tmp_path / "x.txt")[0] == 0

    unrecorded = tmp_path / "older.safetensors"   # a model saved before features were recorded: taken as it is
    KMeansModel(KMeansModel.load(model).centers).save(unrecorded)
    assert run_cli(capsys, "apply", unrecorded, data, tmp_path / "y.txt")[0] == 0


@pytest.mark.parametrize("option", ["--seed", "--deltas"])
def test_a_negative_seed_or_delta_order_is_a_usage_error(option, tmp_path, capsys):
    """A seed of -1 failed in NumPy's generator with a ValueError traceback, once the frames were read;
    a delta order of -1 was taken for 0."""
    with pytest.raises(SystemExit) as exited:
        cli.main(["fit", "--num-clusters", "3", option, "-1", str(tmp_path / "d"), str(tmp_path / "km.safetensors")])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}: expected an integer of 0 or more, got -1" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


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


def test_a_fit_that_reaches_zero_inertia_stops_there():
    """Identical frames reach inertia 0 at the first pass: a change of 0 counts as converged, where the fit
    ran every pass of --max-passes."""
    passes = []
    fit_kmeans(FrameShards.of(np.ones((500, 4), np.float32)), 5, 0, max_passes=10, log=passes.append)
    assert len([line for line in passes if line.startswith("pass ")]) == 2
