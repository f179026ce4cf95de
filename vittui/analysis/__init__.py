"""Analysis of models and runs: attention maps and their statistics, gradient flow, evaluation reports,
and text renderings of heatmaps.

Submodules are imported on use (``from vittui.analysis import attention``) so that importing this package
costs nothing; `heatmap` needs only numpy, the others need torch.
"""
