"""The bundled Fashion-MNIST demo (see bundle.py for the file format, build.py for how it is made)."""

from .bundle import BUNDLE_DIR, DEMO_NAME, FORMAT, Bundle, is_demo, load_bundle, resolve_demo, resolve_network, write_manifest

__all__ = ['BUNDLE_DIR', 'DEMO_NAME', 'FORMAT', 'Bundle', 'is_demo', 'load_bundle', 'resolve_demo', 'resolve_network', 'write_manifest']
