"""Kernel specs on disk: finding them as Jupyter does, atomic and locked writes."""
