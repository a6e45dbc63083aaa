"""Datasets by layout (CamVid, Cityscapes, image/mask folders, procedural scenes) and augmentations."""
