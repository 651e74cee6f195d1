"""Training shared by every stage: :mod:`.trainer` (loop, checkpoints, resume), :mod:`.schedules`,
:mod:`.distributed` (torchrun / DDP)."""
