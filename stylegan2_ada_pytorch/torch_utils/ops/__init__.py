"""Custom ops with a pure-PyTorch `ref` implementation and CUDA kernels built on first use."""
