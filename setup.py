"""audiossl: speech and audio self-supervised learning with Kaldi-style recipes."""
from setuptools import find_packages, setup

setup(
    name="audiossl",
    version="0.1.0",
    description="Speech and audio self-supervised learning toolkit with Kaldi-style recipes",
    packages=find_packages(include=["audiossl", "audiossl.*"]),
    python_requires=">=3.11,<3.12",
    install_requires=[
        "torch==2.9.1",
        "torchaudio==2.9.1",
        "fairseq2==0.8.1",
        "s3prl==0.4.18",
        "librosa>=0.10",
        "soundfile>=0.12",
        "sentencepiece>=0.2",
        "jiwer>=4.0",
        "flashlight-text==0.0.7",   # the lexicon + n-gram LM CTC search (and its KenLM)
        "kaldiio>=2.18",
        "scikit-learn>=1.4",
        "scipy>=1.10",              # the noise set's spectra and resampling
        "mido>=1.3",                # the MIDI files mini_music renders
        "safetensors>=0.4",
        "tensorboard>=2.15",
        "tqdm>=4.66",
        "matplotlib>=3.8",
        "pyyaml>=6.0",
    ],
    # transformers (also pulled in by fairseq2 and s3prl) is the reference the interop tests compare with
    # omegaconf (also pulled in by s3prl): the configs inside the fairseq checkpoints the tests write
    # pytest-xdist: tools/test.sh runs the test files on two workers
    extras_require={"test": ["pytest>=8", "pytest-xdist>=3.5", "transformers>=4.40", "omegaconf>=2.1"]},
)
