"""Inference backends, one file each, imported only when chosen."""
