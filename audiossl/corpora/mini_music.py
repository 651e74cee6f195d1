"""Mini music: an offline music corpus rendered with fluidsynth and a General MIDI soundfont.

Three sets, each with train, dev and test splits, at 16 kHz and 24 kHz:

``notes`` (NSynth style)
    One note of one GM program in a 2 s clip (held 1.5 s, then its release), MIDI pitch
    21–108, velocity 25, 50, 75, 100 or 127. Tables ``utt2program`` (``PROGRAMS``),
    ``utt2family`` (program // 8: ``FAMILIES``), ``utt2pitch`` and ``utt2velocity``. Notes
    that render silent (pitches beyond the soundfont's samples of the instrument: 225 of the
    4000 full-size notes with FluidR3, 60 % of them above pitch 96) are dropped, logged and
    listed in ``audio_dir/silent_clips``.
``tagging`` (MagnaTagATune style)
    4 s clips of 2–4 instruments of ``TAGS`` (drums on MIDI channel 10) playing seeded phrases
    in one key and tempo. ``utt2tags``: the clip's tags in ``TAGS`` order, space separated.
``key`` (GiantSteps style)
    6 s diatonic chord progressions: the tonic chord, 0–4 other chords, then a cadence
    (predominant, V, tonic); minor keys take the major V of the harmonic minor. Instrument,
    voicing, texture (block chords, repeated chords, arpeggios), bass and tempo are seeded.
    ``utt2key``: one of ``KEYS``, "<tonic> <mode>" with flat names ("Eb minor"), as GiantSteps
    and mir_eval write keys. Each split cycles through the 24 keys in a seeded order.

Layout::

    audio_dir/seed, audio_dir/soundfont     the seed and the soundfont (name, size, SHA-256) the audio was made with
    audio_dir/silent_clips                  clips that rendered silent (in no data dir)
    audio_dir/.lock                         held by a run: a second run on the dir waits for it, then reuses
    audio_dir/{16k,24k}/<set>/<utt>.wav     mono 16-bit clips
    data_dir/{16k,24k}/<set>_<split>/       wav.scp utt2spk spk2utt utt2dur utt2<label> and
                                            labels.<label>: every class of the label, one a line

Each clip is its own speaker in ``utt2spk``, so per-speaker CMVN never pools the clips of a class.

Rendering: the clips of a set are laid in MIDI files of at most 10 min, each clip in its own
slot (the clip, then 0.2 s after all-notes-off and all-sound-off on every channel). fluidsynth
renders each file once at 24 kHz, reverb and chorus off, as float samples on a pipe; only the
expected number of samples is read, under a timeout (fluidsynth 2.3.1 renders some files
forever). Each clip is cut from its slot, mixed to mono, faded out over its last 20 ms,
resampled for other rates (``scipy.signal.resample_poly``) and scaled to an RMS of -26 dBFS, less
where its peak would pass -1 dBFS.

Everything is deterministic from the seed and the soundfont: notes are drawn with
``random.Random(seed)``, every tagging and key clip from a generator seeded with (seed, clip
id), and fluidsynth renders a file identically every time. A clip also depends, 40 dB below its
peak or more, on the other clips of its MIDI file: the files are a fixed partition of the plan, and a
missing clip is remade by rendering its whole file again, so it comes back byte-identical.
Existing clips are reused (whatever size made them); each is written under a temporary name
and renamed.
"""
from __future__ import annotations

import hashlib
import logging
import math
import os
import random
import shlex
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from concurrent.futures import as_completed
from dataclasses import dataclass
from pathlib import Path

import mido
import numpy as np
from tqdm import tqdm

from audiossl.atomic import write_text_atomic
from audiossl.audio import reusable_audio, write_pcm16
from audiossl.corpora.noise import level_normalized
from audiossl.corpora.workers import audio_dir_lock, check_provenance, thread_pool
from audiossl.data.kaldi_dir import DataDir
from audiossl.errors import UserError

log = logging.getLogger(__name__)

RENDER_RATE = 24000
SAMPLE_RATES = (16000, 24000)
SETS = ("notes", "tagging", "key")
SPLITS = ("train", "dev", "test")
SIZES = {   # clips per set and split (train, dev, test)
    "tiny": {"notes": (40, 12, 12), "tagging": (8, 4, 4), "key": (12, 6, 6)},
    "full": {"notes": (3000, 500, 500), "tagging": (800, 100, 100), "key": (600, 120, 120)},
}
CLIP_SECONDS = {"notes": 2.0, "tagging": 4.0, "key": 6.0}
NOTE_HELD_SECONDS = 1.5
SLOT_GAP_SECONDS = 0.2
CHUNK_SECONDS = 600.0
FADE_SECONDS = 0.02
GAIN = 0.2                 # fluidsynth's master gain: single notes peak at 0.02–0.1
SILENT_PEAK = 1e-3         # rendered peak (-60 dBFS) below which a clip is silent: silent notes peak below 1e-5
RENDER_TIMEOUT_SECONDS = 60.0
MIN_SPEED = 5.0            # fluidsynth is killed after RENDER_TIMEOUT_SECONDS + audio seconds / MIN_SPEED

SOUNDFONT_DIR = Path("/usr/share/sounds/sf2")
SOUNDFONT_PACKAGES = {"FluidR3_GM.sf2": "fluid-soundfont-gm", "TimGM6mb.sf2": "timgm6mb-soundfont"}

# ---------------------------------------------------------------------------- label sets

PROGRAMS = (
    "acoustic_grand_piano", "bright_acoustic_piano", "electric_grand_piano", "honky_tonk_piano",
    "electric_piano_1", "electric_piano_2", "harpsichord", "clavinet",
    "celesta", "glockenspiel", "music_box", "vibraphone", "marimba", "xylophone", "tubular_bells", "dulcimer",
    "drawbar_organ", "percussive_organ", "rock_organ", "church_organ", "reed_organ", "accordion", "harmonica",
    "tango_accordion",
    "acoustic_guitar_nylon", "acoustic_guitar_steel", "electric_guitar_jazz", "electric_guitar_clean",
    "electric_guitar_muted", "overdriven_guitar", "distortion_guitar", "guitar_harmonics",
    "acoustic_bass", "electric_bass_finger", "electric_bass_pick", "fretless_bass", "slap_bass_1", "slap_bass_2",
    "synth_bass_1", "synth_bass_2",
    "violin", "viola", "cello", "contrabass", "tremolo_strings", "pizzicato_strings", "orchestral_harp", "timpani",
    "string_ensemble_1", "string_ensemble_2", "synth_strings_1", "synth_strings_2", "choir_aahs", "voice_oohs",
    "synth_voice", "orchestra_hit",
    "trumpet", "trombone", "tuba", "muted_trumpet", "french_horn", "brass_section", "synth_brass_1", "synth_brass_2",
    "soprano_sax", "alto_sax", "tenor_sax", "baritone_sax", "oboe", "english_horn", "bassoon", "clarinet",
    "piccolo", "flute", "recorder", "pan_flute", "blown_bottle", "shakuhachi", "whistle", "ocarina",
    "lead_1_square", "lead_2_sawtooth", "lead_3_calliope", "lead_4_chiff", "lead_5_charang", "lead_6_voice",
    "lead_7_fifths", "lead_8_bass_lead",
    "pad_1_new_age", "pad_2_warm", "pad_3_polysynth", "pad_4_choir", "pad_5_bowed", "pad_6_metallic", "pad_7_halo",
    "pad_8_sweep",
    "fx_1_rain", "fx_2_soundtrack", "fx_3_crystal", "fx_4_atmosphere", "fx_5_brightness", "fx_6_goblins",
    "fx_7_echoes", "fx_8_sci_fi",
    "sitar", "banjo", "shamisen", "koto", "kalimba", "bagpipe", "fiddle", "shanai",
    "tinkle_bell", "agogo", "steel_drums", "woodblock", "taiko_drum", "melodic_tom", "synth_drum", "reverse_cymbal",
    "guitar_fret_noise", "breath_noise", "seashore", "bird_tweet", "telephone_ring", "helicopter", "applause",
    "gunshot",
)
FAMILIES = ("piano", "chromatic_percussion", "organ", "guitar", "bass", "strings", "ensemble", "brass", "reed",
            "pipe", "synth_lead", "synth_pad", "synth_effects", "ethnic", "percussive", "sound_effects")
PITCHES = tuple(range(21, 109))
VELOCITIES = (25, 50, 75, 100, 127)

DRUMS_CHANNEL = 9
DRUM_KITS = (0, 8, 16, 24, 25, 32, 40)   # standard, room, power, electronic, TR-808, jazz, brush (FluidR3, TimGM6mb)


@dataclass(frozen=True)
class Instrument:
    """What plays a tag: GM programs (drum kits for drums), a MIDI pitch range, whether it plays chords."""

    programs: tuple[int, ...]
    low: int
    high: int
    chords: bool = False


TAG_INSTRUMENTS = {
    "piano": Instrument((0, 1, 2), 48, 84, True),
    "electric_piano": Instrument((4, 5), 48, 84, True),
    "mallets": Instrument((11, 12, 13), 60, 96),
    "organ": Instrument((16, 17, 18, 19), 48, 84, True),
    "acoustic_guitar": Instrument((24, 25), 40, 76, True),
    "electric_guitar": Instrument((26, 27, 29, 30), 40, 76, True),
    "bass": Instrument((32, 33, 34, 35, 38), 28, 55),
    "violin": Instrument((40,), 55, 91),
    "cello": Instrument((42,), 36, 69),
    "strings": Instrument((48, 49, 50), 43, 79, True),
    "choir": Instrument((52, 53), 48, 76, True),
    "trumpet": Instrument((56, 59), 55, 82),
    "saxophone": Instrument((64, 65, 66), 49, 80),
    "flute": Instrument((73, 74), 60, 96),
    "synth": Instrument((80, 81, 88, 89, 90), 48, 84, True),
    "drums": Instrument(DRUM_KITS, 35, 81),
}
TAGS = tuple(TAG_INSTRUMENTS)

TONICS = ("C", "Db", "D", "Eb", "E", "F", "Gb", "G", "Ab", "A", "Bb", "B")
MODES = ("major", "minor")
KEYS = tuple(f"{tonic} {mode}" for mode in MODES for tonic in TONICS)
SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}   # semitones above the tonic

LABELS: dict[str, dict[str, tuple[str, ...]]] = {
    "notes": {"program": PROGRAMS, "family": FAMILIES, "pitch": tuple(map(str, PITCHES)),
              "velocity": tuple(map(str, VELOCITIES))},
    "tagging": {"tags": TAGS},
    "key": {"key": KEYS},
}

KEY_PROGRAMS = (0, 1, 4, 5, 6, 16, 19, 24, 25, 46, 48, 52, 88, 89)
BASS_PROGRAMS = (32, 33, 34, 35, 38)
PREDOMINANT_DEGREES = {"major": (1, 3), "minor": (1, 3, 5)}        # ii, IV; ii°, iv, VI
OTHER_DEGREES = {"major": (1, 2, 3, 4, 5), "minor": (2, 3, 4, 5, 6)}
KICK, SNARE, CLOSED_HI_HAT, RIDE, CRASH = 36, 38, 42, 51, 49
REST_PROBABILITY = 0.15


class MusicError(UserError, RuntimeError):
    """No fluidsynth or soundfont, a fluidsynth run that failed or did not end, or an audio dir
    of another seed or soundfont; the message says which."""


# ---------------------------------------------------------------------------- plan

@dataclass(frozen=True)
class Note:
    """A MIDI note of a clip; ``start`` and ``end`` in seconds from the clip's start."""

    channel: int
    pitch: int
    velocity: int
    start: float
    end: float


@dataclass(frozen=True)
class Clip:
    """A planned clip: its MIDI programs per channel, notes and labels (``(label, value)`` pairs)."""

    utt: str
    seconds: float
    programs: tuple[tuple[int, int], ...]
    notes: tuple[Note, ...]
    labels: tuple[tuple[str, str], ...]

    def label(self, name: str) -> str:
        """The clip's value of label ``name`` (e.g. "pitch": "60")."""
        return dict(self.labels)[name]


def note_clip(program: int, pitch: int, velocity: int) -> Clip:
    """A single note of a GM program, id ``<program name>-<pitch>-<velocity>``."""
    name = PROGRAMS[program]
    return Clip(f"{name}-{pitch:03d}-{velocity:03d}", CLIP_SECONDS["notes"], ((0, program),),
                (Note(0, pitch, velocity, 0.0, NOTE_HELD_SECONDS),),
                (("program", name), ("family", FAMILIES[program // 8]), ("pitch", str(pitch)),
                 ("velocity", str(velocity))))


def _jittered(rng: random.Random, velocity: int, spread: int = 8) -> int:
    return min(127, max(1, velocity + rng.randint(-spread, spread)))


def phrase(rng: random.Random, channel: int, instrument: Instrument, tonic: int, scale: Sequence[int],
           beat: float, seconds: float) -> list[Note]:
    """A seeded line (thirds stacked on some notes for chord instruments) walking a scale within the
    instrument's range, on a grid of half, one or two beats, with rests."""
    pitches = [p for p in range(instrument.low, instrument.high + 1) if (p - tonic) % 12 in scale]
    step = beat * rng.choice((0.5, 1.0, 2.0))
    index = rng.randrange(len(pitches) // 4, 3 * len(pitches) // 4)
    velocity = rng.randint(70, 110)
    notes: list[Note] = []
    t = 0.0
    while t < seconds - 0.05:
        length = step * rng.choice((1, 1, 2))
        if not notes or rng.random() >= REST_PROBABILITY:
            index = min(max(index + rng.choice((-2, -1, -1, 0, 1, 1, 2)), 0), len(pitches) - 1)
            stack = (0, 2, 4) if instrument.chords and rng.random() < 0.4 else (0,)
            end = round(min(t + 0.9 * length, seconds), 3)
            notes += [Note(channel, pitches[index + s], _jittered(rng, velocity), round(t, 3), end)
                      for s in stack if index + s < len(pitches)]
        t += length
    return notes


def drum_pattern(rng: random.Random, beat: float, seconds: float) -> list[Note]:
    """Hi-hat or ride on every eighth, kick on beats 1 and 3 (and some offbeats), snare on 2 and 4."""
    cymbal = rng.choice((CLOSED_HI_HAT, RIDE))
    velocity = rng.randint(80, 115)
    notes = [Note(DRUMS_CHANNEL, CRASH, velocity, 0.0, 0.1)] if rng.random() < 0.5 else []
    eighth = beat / 2
    k = 0
    while (t := k * eighth) < seconds - 0.05:
        hits = [cymbal]
        if k % 4 == 0 or (k % 2 == 1 and rng.random() < 0.2):
            hits.append(KICK)
        if k % 4 == 2:
            hits.append(SNARE)
        notes += [Note(DRUMS_CHANNEL, p, _jittered(rng, velocity, 15), round(t, 3), round(min(t + 0.1, seconds), 3))
                  for p in hits]
        k += 1
    return notes


def tagging_clip(utt: str, seed: int) -> Clip:
    """2–4 instruments of ``TAGS`` playing in one key and tempo (80–150 beats a minute)."""
    rng = random.Random(f"{seed}/{utt}")
    seconds = CLIP_SECONDS["tagging"]
    tags = sorted(rng.sample(TAGS, rng.randint(2, 4)), key=TAGS.index)
    beat = 60 / rng.uniform(80, 150)
    tonic, scale = rng.randrange(12), SCALES[rng.choice(MODES)]
    programs: list[tuple[int, int]] = []
    notes: list[Note] = []
    for channel, tag in enumerate(t for t in tags if t != "drums"):
        instrument = TAG_INSTRUMENTS[tag]
        programs.append((channel, rng.choice(instrument.programs)))
        notes += phrase(rng, channel, instrument, tonic, scale, beat, seconds)
    if "drums" in tags:
        programs.append((DRUMS_CHANNEL, rng.choice(DRUM_KITS)))
        notes += drum_pattern(rng, beat, seconds)
    return Clip(utt, seconds, tuple(programs), tuple(notes), (("tags", " ".join(tags)),))


def chord_tones(mode: str, degree: int, seventh: bool = False) -> list[int]:
    """Semitones above the tonic of the diatonic triad (or seventh chord) on ``degree`` (0 = I);
    in minor, V has the raised seventh of the harmonic minor."""
    scale = SCALES[mode]
    steps = (0, 2, 4, 6) if seventh else (0, 2, 4)
    tones = [scale[(degree + s) % 7] + 12 * ((degree + s) // 7) for s in steps]
    if mode == "minor" and degree == 4:
        tones[1] += 1
    return tones


def progression(rng: random.Random, mode: str, length: int) -> list[int]:
    """Scale degrees (0 = I) of ``length`` >= 4 chords: I, others (no chord twice in a row), a predominant, V, I."""
    degrees = [0]
    for _ in range(length - 4):
        degrees.append(rng.choice([d for d in OTHER_DEGREES[mode] if d != degrees[-1]]))
    degrees.append(rng.choice([d for d in PREDOMINANT_DEGREES[mode] if d != degrees[-1]]))
    return degrees + [4, 0]


def key_clip(utt: str, key: str, seed: int) -> Clip:
    """A chord progression in ``key`` (one of ``KEYS``): 4–8 chords of equal length but the last
    (twice as long), in close position above a root bass (on the same instrument or a bass)."""
    rng = random.Random(f"{seed}/{utt}")
    seconds = CLIP_SECONDS["key"]
    tonic_name, mode = key.split()
    tonic = TONICS.index(tonic_name)
    degrees = progression(rng, mode, rng.randint(4, 8))
    unit = seconds / (len(degrees) + 1)
    programs = [(0, rng.choice(KEY_PROGRAMS))]
    bass_channel = 0
    if rng.random() < 0.5:
        bass_channel = 1
        programs.append((1, rng.choice(BASS_PROGRAMS)))
    texture = rng.choice(("block", "repeated", "arpeggio"))
    strokes = rng.choice((2, 3, 4)) if texture == "repeated" else rng.choice((4, 6, 8))
    low = rng.randint(48, 60)
    velocity = rng.randint(60, 100)
    dominant_seventh = rng.random() < 0.5
    notes: list[Note] = []
    for i, degree in enumerate(degrees):
        start, chord_seconds = i * unit, unit * (2 if i == len(degrees) - 1 else 1)
        classes = [(tonic + t) % 12 for t in chord_tones(mode, degree, dominant_seventh and degree == 4)]
        upper = sorted(low + (c - low) % 12 for c in classes)
        root = 36 + (classes[0] - 36) % 12
        notes.append(Note(bass_channel, root, _jittered(rng, velocity), round(start, 3),
                          round(start + 0.95 * chord_seconds, 3)))
        if texture == "block":
            events = [(start, chord_seconds, upper)]
        else:
            step = chord_seconds / strokes
            cycle = upper + [upper[0] + 12]
            events = [(start + k * step, step, upper if texture == "repeated" else [cycle[k % len(cycle)]])
                      for k in range(strokes)]
        for t, length, pitches in events:
            notes += [Note(0, p, _jittered(rng, velocity), round(t, 3), round(t + 0.9 * length, 3)) for p in pitches]
    return Clip(utt, seconds, tuple(programs), tuple(notes), (("key", key),))


def plan_mini_music(size: str = "full", seed: int = 0) -> dict[str, dict[str, list[Clip]]]:
    """Every clip of every set and split: ``{set: {split: clips}}``; a clip's content depends only
    on its id and the seed, so audio is shared between sizes."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {' '.join(SIZES)}, got '{size}'")
    counts = SIZES[size]
    num_pitches, num_velocities = len(PITCHES), len(VELOCITIES)
    drawn = random.Random(f"{seed}/notes").sample(range(len(PROGRAMS) * num_pitches * num_velocities),
                                                  sum(counts["notes"]))
    notes = [note_clip(c // (num_pitches * num_velocities), PITCHES[c // num_velocities % num_pitches],
                       VELOCITIES[c % num_velocities]) for c in drawn]
    bounds = np.cumsum((0,) + counts["notes"])
    key_orders = {split: random.Random(f"{seed}/key-{split}").sample(KEYS, len(KEYS)) for split in SPLITS}
    return {
        "notes": {split: notes[bounds[i]:bounds[i + 1]] for i, split in enumerate(SPLITS)},
        "tagging": {split: [tagging_clip(f"tagging-{split}-{i:05d}", seed) for i in range(n)]
                    for split, n in zip(SPLITS, counts["tagging"])},
        "key": {split: [key_clip(f"key-{split}-{i:05d}", key_orders[split][i % len(KEYS)], seed) for i in range(n)]
                for split, n in zip(SPLITS, counts["key"])},
    }


# ---------------------------------------------------------------------------- rendering

def find_soundfont(soundfont: str | os.PathLike | None = None) -> Path:
    """``soundfont`` if given, else the first of FluidR3_GM and TimGM6mb installed; raises
    :class:`MusicError` naming the Debian packages when there is none."""
    if soundfont is not None:
        if not Path(soundfont).is_file():
            raise MusicError(f"soundfont {soundfont} not found")
        return Path(soundfont).absolute()
    for name in SOUNDFONT_PACKAGES:
        if (SOUNDFONT_DIR / name).is_file():
            return SOUNDFONT_DIR / name
    raise MusicError(f"no General MIDI soundfont in {SOUNDFONT_DIR}: install the Debian package "
                     + " or ".join(SOUNDFONT_PACKAGES.values()))


def midi_file(clips: Sequence[Clip]) -> tuple[mido.MidiFile, list[int]]:
    """One MIDI file (1 tick = 1 ms) holding ``clips`` in consecutive slots; returns it and each
    slot's start in ms. Every slot and the file end with all-notes-off, then all-sound-off, on every
    channel (fluidsynth 2.3.1 lets voices cut by all-sound-off ring on through their release when
    all-notes-off follows it)."""
    events: list[tuple[int, int, mido.Message]] = []   # (tick, order at that tick, message)

    def all_off(tick: int) -> None:
        events.extend((tick, 0, mido.Message("control_change", channel=c, control=control))
                      for c in range(16) for control in (123, 120))

    starts, tick = [], 0
    for clip in clips:
        starts.append(tick)
        for channel, program in clip.programs:
            events.append((tick, 0, mido.Message("control_change", channel=channel, control=121)))
            events.append((tick, 0, mido.Message("program_change", channel=channel, program=program)))
        for n in clip.notes:
            on = tick + round(n.start * 1000)
            events.append((on, 2, mido.Message("note_on", channel=n.channel, note=n.pitch, velocity=n.velocity)))
            events.append((max(on + 1, tick + round(n.end * 1000)), 1,
                           mido.Message("note_off", channel=n.channel, note=n.pitch)))
        all_off(tick + round(clip.seconds * 1000))
        tick += round((clip.seconds + SLOT_GAP_SECONDS) * 1000)
    all_off(tick)
    events.sort(key=lambda e: e[:2])
    track = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=1_000_000, time=0)])
    previous = 0
    for t, _, message in events:
        track.append(message.copy(time=t - previous))
        previous = t
    track.append(mido.MetaMessage("end_of_track", time=0))
    midi = mido.MidiFile(type=0, ticks_per_beat=1000)
    midi.tracks.append(track)
    return midi, starts


def fluidsynth_command(soundfont: Path, midi_path: Path) -> list[str]:
    """fluidsynth rendering ``midi_path`` at 24 kHz as raw little-endian float stereo to standard output."""
    return ["fluidsynth", "-n", "-i", "-q", "-R", "0", "-C", "0", "-g", str(GAIN), "-r", str(RENDER_RATE),
            "-T", "raw", "-O", "float", "-E", "little", "-F", "-", str(soundfont), str(midi_path)]


def render(midi_path: Path, soundfont: Path, seconds: float) -> np.ndarray:
    """The first ``seconds`` of fluidsynth's rendering of ``midi_path``, mono at 24 kHz; shape
    (round(seconds * 24000),). fluidsynth is killed once that much is read, or after its timeout."""
    argv = fluidsynth_command(soundfont, midi_path)
    num_bytes = round(seconds * RENDER_RATE) * 2 * 4
    timeout = RENDER_TIMEOUT_SECONDS + seconds / MIN_SPEED
    timed_out = threading.Event()
    with tempfile.TemporaryFile() as stderr, \
            subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=stderr) as proc:
        def stop() -> None:
            timed_out.set()
            proc.kill()

        timer = threading.Timer(timeout, stop)
        timer.start()
        try:
            data = proc.stdout.read(num_bytes)
        finally:
            timer.cancel()
            proc.kill()
            proc.wait()
        if len(data) < num_bytes:
            if timed_out.is_set():
                raise MusicError(f"{shlex.join(argv)}: still rendering after {timeout:.0f} s; killed")
            stderr.seek(0)
            tail = "".join(f": {line}" for line in stderr.read().decode(errors="replace").strip().splitlines()[-1:])
            raise MusicError(f"{shlex.join(argv)} gave {len(data) / 8 / RENDER_RATE:.2f} s of audio, "
                             f"not {seconds:.2f} s (exit {proc.returncode}){tail}")
    return np.frombuffer(data, dtype="<f4").reshape(-1, 2).mean(axis=1)


def rate_name(rate: int) -> str:
    """The folder of a sample rate: 16000 -> "16k"."""
    return f"{rate / 1000:g}k"


def clip_path(audio_dir: Path, rate: int, set_name: str, utt: str) -> Path:
    """Where a clip's audio lives: ``audio_dir/<rate>/<set>/<utt>.wav``."""
    return audio_dir / rate_name(rate) / set_name / f"{utt}.wav"


def write_wav(path: Path, samples: np.ndarray, rate: int) -> None:
    """Write level-normalized ``samples`` as mono 16-bit wav, atomically."""
    write_pcm16(path, np.round(np.clip(level_normalized(samples), -1, 1) * 32767).astype("<i2"), rate)


def resampled(samples: np.ndarray, rate: int) -> np.ndarray:
    """24 kHz ``samples`` at ``rate`` (polyphase, ``scipy.signal.resample_poly``); shape (num_samples,)."""
    if rate == RENDER_RATE:
        return samples
    import scipy.signal   # 1 s to import: only when a rate other than 24 kHz is asked for

    common = math.gcd(rate, RENDER_RATE)
    return scipy.signal.resample_poly(samples, rate // common, RENDER_RATE // common)


def render_clips(set_name: str, clips: Sequence[Clip], audio_dir: Path, soundfont: Path,
                 sample_rates: Sequence[int] = SAMPLE_RATES) -> list[str]:
    """Render ``clips`` with one fluidsynth call and write each clip's missing wavs; returns the
    ids of the clips that rendered silent (no wav written)."""
    midi, starts = midi_file(clips)
    with tempfile.TemporaryDirectory(prefix="mini_music_") as tmp:
        midi_path = Path(tmp) / f"{set_name}.mid"
        midi.save(str(midi_path))
        audio = render(midi_path, soundfont, starts[-1] / 1000 + clips[-1].seconds)
    silent = []
    fade = round(FADE_SECONDS * RENDER_RATE)
    for clip, start in zip(clips, starts):
        first = start * RENDER_RATE // 1000
        samples = audio[first:first + round(clip.seconds * RENDER_RATE)].astype(np.float64)
        if np.abs(samples).max() < SILENT_PEAK:
            silent.append(clip.utt)
            continue
        samples[-fade:] *= np.linspace(1.0, 0.0, fade)
        for rate in sample_rates:
            path = clip_path(audio_dir, rate, set_name, clip.utt)
            if not reusable_audio(path):
                write_wav(path, resampled(samples, rate), rate)
    return silent


def chunks(clips: Sequence[Clip], max_seconds: float = CHUNK_SECONDS) -> list[list[Clip]]:
    """Consecutive runs of ``clips`` whose slots last at most ``max_seconds`` (at least one clip each)."""
    runs: list[list[Clip]] = []
    seconds = 0.0
    for clip in clips:
        slot = clip.seconds + SLOT_GAP_SECONDS
        if not runs or seconds + slot > max_seconds:
            runs.append([])
            seconds = 0.0
        runs[-1].append(clip)
        seconds += slot
    return runs


# ---------------------------------------------------------------------------- corpus

def soundfont_identity(soundfont: Path) -> str:
    """``"<name> (<size> bytes, sha256 <hex>)"``: what the soundfont's record names it by, so that another
    file at the same path (another package version, an edited font) counts as another soundfont."""
    with open(soundfont, "rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    return f"{soundfont.name} ({soundfont.stat().st_size} bytes, sha256 {digest})"


def _check_provenance(audio_dir: Path, seed: int, soundfont: Path) -> None:
    """Record the seed and soundfont of the audio (:func:`~audiossl.corpora.workers.check_provenance`).

    A record of the soundfont's name alone (audio dirs made before sizes and digests were recorded) is
    taken for the same font, as it was then, and recorded again in full.
    """
    record, identity = audio_dir / "soundfont", soundfont_identity(soundfont)
    if record.is_file() and record.read_text().strip() == soundfont.name:
        log.info("%s: its soundfont %s was recorded by name alone; recorded now as %s", audio_dir,
                    soundfont.name, identity)
        write_text_atomic(record, f"{identity}\n")
    check_provenance(audio_dir, {"seed": str(seed), "soundfont": identity}, MusicError)


def _read_silent(path: Path) -> set[str]:
    return set(path.read_text().split()) if path.is_file() else set()


def write_split(path: Path, set_name: str, clips: Sequence[Clip], audio_dir: Path, rate: int) -> None:
    """Write a Kaldi data dir: wav.scp, utt2spk (each clip its own speaker), spk2utt, utt2dur,
    utt2<label> for each label of the set, and labels.<label> (the label's classes)."""
    tables = {
        "wav.scp": {c.utt: str(clip_path(audio_dir, rate, set_name, c.utt)) for c in clips},
        "utt2spk": {c.utt: c.utt for c in clips},
        "utt2dur": {c.utt: f"{round(c.seconds * rate) / rate:.4f}" for c in clips},
    }
    for name in LABELS[set_name]:
        tables[f"utt2{name}"] = {c.utt: c.label(name) for c in clips}
    DataDir(tables).write(path)
    for name, classes in LABELS[set_name].items():
        write_text_atomic(path / f"labels.{name}", "".join(f"{c}\n" for c in classes))


def prepare_mini_music(audio_dir: str | os.PathLike, data_dir: str | os.PathLike, size: str = "full",
                       seed: int = 0, sample_rates: Sequence[int] = SAMPLE_RATES,
                       soundfont: str | os.PathLike | None = None, num_workers: int = 2,
                       progress: bool = False) -> dict[str, Path]:
    """Render the missing clips into ``audio_dir`` and write the Kaldi data dirs under ``data_dir``.

    Args:
        size: "full" (notes 3000/500/500, tagging 800/100/100, key 600/120/120 clips for
            train/dev/test) or "tiny" (notes 40/12/12, tagging 8/4/4, key 12/6/6; seconds to build).
        seed: fixes every clip; the same seed and soundfont give identical files.
        sample_rates: rates of the data dirs, in Hz (rendered at 24 kHz, resampled for the others).
        soundfont: a General MIDI .sf2; default FluidR3_GM (fluid-soundfont-gm), else TimGM6mb.
        num_workers: fluidsynth processes run at once.

    Returns:
        ``{"<rate>/<set>_<split>": data dir}``, e.g. ``"16k/notes_train"``.

    Raises:
        MusicError: fluidsynth or a soundfont is missing, a fluidsynth run failed or did not end,
            ``audio_dir`` holds audio of another seed or soundfont, or a split rendered silent.
    """
    plan = plan_mini_music(size, seed)
    if not sample_rates or any(int(r) != r or r <= 0 for r in sample_rates):
        raise ValueError(f"sample rates must be positive integers, got {sample_rates}")
    if shutil.which("fluidsynth") is None:
        raise MusicError("fluidsynth not found: install the Debian package fluidsynth")
    soundfont = find_soundfont(soundfont)
    audio_dir, data_dir = Path(audio_dir).absolute(), Path(data_dir)
    with audio_dir_lock(audio_dir):
        _check_provenance(audio_dir, seed, soundfont)
        silent_path = audio_dir / "silent_clips"
        silent = _read_silent(silent_path)
        jobs = []
        for set_name, splits in plan.items():
            clips = [c for split in SPLITS for c in splits[split]]
            missing = {c.utt for c in clips if c.utt not in silent
                       and not all(reusable_audio(clip_path(audio_dir, r, set_name, c.utt)) for r in sample_rates)}
            runs = [run for run in chunks(clips) if any(c.utt in missing for c in run)]
            log.info("%s: %d clips planned, %d missing; %d MIDI files to render", set_name, len(clips),
                     len(missing), len(runs))
            jobs += [(set_name, run) for run in runs]
        with thread_pool(num_workers) as pool:
            futures = [pool.submit(render_clips, set_name, run, audio_dir, soundfont, sample_rates)
                       for set_name, run in jobs]
            for future in tqdm(as_completed(futures), total=len(futures), desc="rendering", unit="file",
                               disable=not progress):
                found = future.result()
                if found:
                    silent.update(found)
                    write_text_atomic(silent_path, "".join(f"{utt}\n" for utt in sorted(silent)))
        written = {}
        for set_name, splits in plan.items():
            for split, clips in splits.items():
                kept = [c for c in clips if c.utt not in silent]
                dropped = [c.utt for c in clips if c.utt in silent]
                if not kept:
                    raise MusicError(f"every clip of {set_name}_{split} rendered silent with {soundfont}")
                if dropped:
                    log.warning("%s_%s: %d of %d clips rendered silent and were dropped (%s%s)", set_name, split,
                                len(dropped), len(clips), " ".join(dropped[:3]), " ..." if len(dropped) > 3 else "")
                log.info("%s_%s: %d clips, %.1f min", set_name, split, len(kept), sum(c.seconds for c in kept) / 60)
                for rate in sample_rates:
                    key = f"{rate_name(rate)}/{set_name}_{split}"
                    write_split(data_dir / key, set_name, kept, audio_dir, rate)
                    written[key] = data_dir / key
        return written
