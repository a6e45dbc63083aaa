"""Bundled pretrained models, resolvable by short name."""
