"""Frame-level pseudo-label targets: HuBERT-style k-means (:mod:`.kmeans`) and label tables (:mod:`.labels`)."""
