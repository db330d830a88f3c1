"""C++ sources of the Selective Attention op (built on first use)."""
