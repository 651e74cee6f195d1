"""Training tasks: batch → loss and metrics (:mod:`.base`, :mod:`.ssl`, :mod:`.asr`)."""
