"""vittui: train and fine-tune Vision Transformers from a terminal dashboard.

Importing the package loads neither torch nor Textual: the dashboard's first frame must not wait
for them, and the worker must not pay for a UI it never shows.
"""

__version__ = "0.1.0"
