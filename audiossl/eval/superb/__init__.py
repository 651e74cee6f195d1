"""SUPERB-style evaluation: any frozen upstream, a learned weighted sum of its layers, light heads per task.

:mod:`upstreams` opens what ``--upstream`` names, :mod:`cache` keeps its hidden states per data
dir, :mod:`tasks` defines the ten tasks (speech, speaker, music), :mod:`heads` their probes,
:mod:`runner` trains and scores one task, :mod:`table` writes the table across upstreams. The
command line is :mod:`audiossl.bin.superb`; the recipe ``recipes/superb.sh``.
"""
