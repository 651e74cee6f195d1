"""Shared fixtures: small Kaldi data dirs synthesized on the spot (no downloads)."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile

from audiossl.data.kaldi_dir import DataDir

RECIPES = Path(__file__).resolve().parent.parent / "recipes"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The end-to-end recipe tests first, slowest first: the workers of tools/test.sh start them
    at once and share out the short tests while they run."""
    order = ("test_mini_tts_recipes.py", "test_superb_recipe.py", "test_utterance_recipes.py", "test_mini_music_ssl.py",
             "test_domain_recipe.py", "test_distributed.py", "test_kill_resume.py")
    items.sort(key=lambda item: order.index(item.path.name) if item.path.name in order else len(order))


def synth_speechlike(seconds: float, seed: int, rate: int = 16000) -> np.ndarray:
    """A harmonic, amplitude-modulated signal with noise: (samples,) float32 in [-1, 1]."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    f0 = 100 + 80 * rng.random() + 20 * np.sin(2 * np.pi * 0.5 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    wave = sum(np.sin(k * phase) / k for k in range(1, 8))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * (2 + 2 * rng.random()) * t) ** 2
    wave = wave * envelope + 0.02 * rng.standard_normal(t.size)
    return (0.3 * wave / np.abs(wave).max()).astype(np.float32)


@pytest.fixture
def audio_dir(tmp_path: Path) -> Path:
    """Three 16 kHz wav files, one 8 kHz flac, under tmp_path/audio."""
    root = tmp_path / "audio"
    root.mkdir()
    for i, seconds in enumerate((1.3, 2.0, 0.9)):
        soundfile.write(root / f"rec{i}.wav", synth_speechlike(seconds, i), 16000, subtype="PCM_16")
    soundfile.write(root / "rec8k.flac", synth_speechlike(1.1, 9, 8000), 8000)
    return root


@pytest.fixture
def data_dir(tmp_path: Path, audio_dir: Path) -> Path:
    """A valid data dir mixing plain files, a sox pipe entry and an 8 kHz flac (no segments)."""
    sox = shutil.which("sox")
    assert sox, "sox is installed by tools/install.sh"
    wav_scp = {
        "spkA-u1": str(audio_dir / "rec0.wav"),
        "spkA-u2": f"sox {audio_dir / 'rec1.wav'} -t wav - |",
        "spkB-u3": str(audio_dir / "rec2.wav"),
        "spkB-u4": str(audio_dir / "rec8k.flac"),
    }
    text = {"spkA-u1": "HELLO WORLD", "spkA-u2": "A PIPE ENTRY", "spkB-u3": "THIRD ONE", "spkB-u4": "EIGHT K"}
    utt2spk = {u: u.split("-")[0] for u in wav_scp}
    path = tmp_path / "data"
    DataDir({"wav.scp": wav_scp, "text": text, "utt2spk": utt2spk}).write(path)
    return path


@pytest.fixture
def plain_data_dir(tmp_path: Path, audio_dir: Path) -> Path:
    """``data_dir``'s utterances and audio, each a plain file: no sox needed (a GPU machine may lack it)."""
    files = {"spkA-u1": "rec0.wav", "spkA-u2": "rec1.wav", "spkB-u3": "rec2.wav", "spkB-u4": "rec8k.flac"}
    text = {"spkA-u1": "HELLO WORLD", "spkA-u2": "A PIPE ENTRY", "spkB-u3": "THIRD ONE", "spkB-u4": "EIGHT K"}
    path = tmp_path / "data"
    DataDir({"wav.scp": {u: str(audio_dir / f) for u, f in files.items()}, "text": text,
             "utt2spk": {u: u.split("-")[0] for u in files}}).write(path)
    return path


@pytest.fixture
def segments_dir(tmp_path: Path, audio_dir: Path) -> Path:
    """A data dir whose utterances are regions of two recordings (one a pipe entry)."""
    wav_scp = {"recA": str(audio_dir / "rec1.wav"), "recB": f"sox {audio_dir / 'rec0.wav'} -t wav - |"}
    segments = {"spk1-s1": "recA 0.00 0.80", "spk1-s2": "recA 0.75 2.00", "spk2-s3": "recB 0.10 1.20"}
    text = {u: "SOME WORDS" for u in segments}
    path = tmp_path / "seg"
    DataDir({"wav.scp": wav_scp, "segments": segments, "text": text,
             "utt2spk": {u: u.split("-")[0] for u in segments}}).write(path)
    return path


@pytest.fixture
def recipe_dir(tmp_path: Path) -> Path:
    """A recipe dir with steps/ and utils/ linked the Kaldi way; commands run from here."""
    path = tmp_path / "recipe"
    path.mkdir()
    (path / "steps").symlink_to(RECIPES / "steps")
    (path / "utils").symlink_to(RECIPES / "utils")
    return path
