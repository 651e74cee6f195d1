"""Speech for the benchmarks, synthesized offline with the mini_tts engines (flite, espeak-ng, sox, ...)."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from audiossl.corpora import mini_tts


def synthesize(out_dir: Path, num_utts: int, speakers: list[str], sentences: list[str], workers: int = 2) -> list[Path]:
    """Write ``num_utts`` 16 kHz mono wavs ``utt<i>.wav``; speakers and sentences cycle, pitch and tempo
    vary per utterance (mini_tts's jitter, seed 0)."""
    jobs = []
    for i in range(num_utts):
        voice = mini_tts.VOICES_BY_SPEAKER[speakers[i % len(speakers)]]
        jobs.append((voice, sentences[i % len(sentences)], out_dir / f"utt{i:05d}.wav", f"utt{i:05d}"))
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda job: mini_tts.synthesize_utterance(job[0], job[1], job[2], seed=0, utt=job[3]), jobs))
    return [job[2] for job in jobs]
