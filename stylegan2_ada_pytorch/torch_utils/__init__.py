"""`torch_utils`: persistence, misc helpers, training statistics, custom ops (the toolkit's layout)."""
