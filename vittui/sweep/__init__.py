"""Sweeps: an Optuna study whose trials are ordinary run directories.

`space` reads and checks the search-space file, `storage` opens the study's Optuna storage, `driver` asks
Optuna for trials, enqueues their runs and tells Optuna how each ended, `report` is the worker's side (each
eval reported to the trial, pruning), `status` reads a study back for `vittui sweep status` and the
dashboard. No torch and no Textual here; Optuna is imported only inside the functions that need it, so
`import vittui.sweep` stays cheap for the worker and the UI.
"""
