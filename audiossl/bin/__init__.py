"""Command-line entry points: ``python -m audiossl.bin.<stage>``."""
