"""Widgets, one a file. They get data as attributes from their screen and report intent with messages."""
