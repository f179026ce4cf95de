"""Analysis of models and runs: attention maps and their statistics, gradient flow, evaluation metrics
and reports.

Torch and torch-free code are apart by file: `attention_stats` and `metrics` need only numpy (the
dashboard reads them); `attention`, `evaluate` and `gradients` run a model and need torch. Submodules are
imported on use (``from vittui.analysis import attention_stats``) so that importing this package costs
nothing.
"""
