"""Atomic writes: the old file survives a failed write, and no temporary file is left behind."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from audiossl.atomic import atomic_dir, atomic_path, write_text_atomic
from audiossl.checkpoint import save_checkpoint
from audiossl.interop.fairseq import save_fairseq
from audiossl.interop.fairseq2 import save_fairseq2
from audiossl.interop.huggingface import save_hf
from audiossl.interop.s3prl import save_s3prl
from audiossl.models.hubert import HubertConfig, build_hubert
from audiossl.models.wav2vec2 import Wav2Vec2Config, build_wav2vec2


def test_a_finished_write_replaces_the_file(tmp_path):
    target = tmp_path / "table.txt"
    target.write_text("old\n")
    write_text_atomic(target, "new\n")
    assert target.read_text() == "new\n" and [p.name for p in tmp_path.iterdir()] == ["table.txt"]


def test_a_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "model.bin"
    target.write_bytes(b"old")
    with pytest.raises(OSError, match="disk full"):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half a mod")
            raise OSError("disk full")
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["model.bin"]
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "new.bin"):
            raise RuntimeError("killed before writing")
    assert not (tmp_path / "new.bin").exists()


def test_a_directory_is_replaced_whole_or_not_at_all(tmp_path):
    target = tmp_path / "train_st"
    target.mkdir()
    (target / "stale").write_text("of an earlier set\n")
    with pytest.raises(OSError, match="disk full"):
        with atomic_dir(target) as tmp:
            (tmp / "text").write_text("half")
            raise OSError("disk full")
    assert [p.name for p in target.iterdir()] == ["stale"] and [p.name for p in tmp_path.iterdir()] == ["train_st"]
    with atomic_dir(target) as tmp:
        (tmp / "text").write_text("new\n")
    assert [p.name for p in target.iterdir()] == ["text"] and [p.name for p in tmp_path.iterdir()] == ["train_st"]


def test_a_directory_left_aside_by_a_killed_replacement_is_put_back_by_the_next(tmp_path, monkeypatch):
    """A kill between moving the earlier directory aside and the new one in leaves the earlier one as
    ``.<name>.old``; the next replacement puts it back first, so that a failed one keeps it."""
    target = tmp_path / "train_st"
    target.mkdir()
    (target / "text").write_text("earlier\n")
    rename = Path.rename

    def killed_before_moving_in(self, to):
        if self.name.endswith(".tmp"):
            raise KeyboardInterrupt
        return rename(self, to)

    monkeypatch.setattr(Path, "rename", killed_before_moving_in)
    with pytest.raises(KeyboardInterrupt):
        with atomic_dir(target) as tmp:
            (tmp / "text").write_text("new\n")
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == [".train_st.old"]
    with pytest.raises(OSError, match="disk full"):
        with atomic_dir(target):
            raise OSError("disk full")
    assert [p.name for p in tmp_path.iterdir()] == ["train_st"] and (target / "text").read_text() == "earlier\n"


@pytest.mark.parametrize("writer, written", [
    (lambda model, out: save_checkpoint(out / "model.pt", "hubert", model.config.to_dict(), model.state_dict()),
     ["model.pt"]),
    (lambda model, out: save_fairseq(model, out / "fairseq.pt"), ["fairseq.pt"]),
    (lambda model, out: save_hf(model, out / "hf"), ["hf/config.json", "hf/model.safetensors"]),
    (lambda model, out: write_text_atomic(out / "table.txt", "a 1\n"), ["table.txt"]),
    (lambda model, out: save_s3prl(model, out / "s3prl.pt"), ["s3prl.pt"]),
    (lambda model, out: save_fairseq2(build_wav2vec2(Wav2Vec2Config.tiny()), out / "fs2"),
     ["fs2/model.yaml", "fs2/step_0/model/pp_00/tp_00/sdp_00.pt"]),
], ids=["checkpoint", "fairseq", "hugging-face", "text", "s3prl", "fairseq2"])
def test_a_file_is_synced_to_disk_whole_before_it_takes_its_name(tmp_path, monkeypatch, writer, written):
    """Every writer through ``atomic_path`` syncs the file it renames (a power loss after the rename
    cannot leave an empty file): each written file was synced, by inode, at its final size."""
    synced, fsync = set(), os.fsync

    def recording(fd):
        fsync(fd)
        synced.add((os.fstat(fd).st_ino, os.fstat(fd).st_size))

    model = build_hubert(HubertConfig.tiny())
    monkeypatch.setattr(os, "fsync", recording)
    writer(model, tmp_path)
    for name in written:
        stat = (tmp_path / name).stat()
        assert (stat.st_ino, stat.st_size) in synced, name
