"""Named editing directions and their registry."""
