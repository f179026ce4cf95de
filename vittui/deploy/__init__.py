"""After training: compare runs (`compare`, pure, no torch), predict on images (`predict`), export a trained
model for deployment (`export`) with a model card (`modelcard`).

Only `compare` is imported by the dashboard; the others import torch inside their functions."""
