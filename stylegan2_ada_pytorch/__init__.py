"""A clean-room, pickle-compatible implementation of NVIDIA's StyleGAN2-ADA-PyTorch toolkit."""
