"""Screens: setup (recipe + model), monitor (one run), runs (every run), and small modals."""
