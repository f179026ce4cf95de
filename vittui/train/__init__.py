"""Training: the loop, its optimizer and schedule, checkpoints, and the worker process entry."""
