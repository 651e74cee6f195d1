"""Training tasks: batch → loss and metrics (:mod:`.base`, :mod:`.pretrain`, :mod:`.asr`)."""
