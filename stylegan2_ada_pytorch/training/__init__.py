"""Training-side modules of the toolkit (loss, training loop, datasets, augmentation)."""
