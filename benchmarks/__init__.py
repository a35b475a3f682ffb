"""Benchmarks: every model under the same saved splits, the study's table, ablations.

Sits on top of both model families (``smi_features``, ``smi_deep``) and the data layer
(``smi_data``). ``registry`` names the models, ``baselines`` holds the simple ones,
``harness`` runs folds, ``aggregate`` computes metrics and tables, ``report`` writes
report.md/report.html with plots, ``ablate`` runs the named ablations.
"""
