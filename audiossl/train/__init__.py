"""Training shared by every stage: :mod:`.trainer` (loop, checkpoints, resume), :mod:`.schedules`,
:mod:`.precision`, :mod:`.distributed` (torchrun process groups, the watchdog), :mod:`.sharding`
(FSDP2, activation checkpointing) and :mod:`.launch` (local, Slurm and hostfile launches)."""
