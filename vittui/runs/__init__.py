"""The run directory: the only contract between the training worker and any dashboard. No torch here."""
