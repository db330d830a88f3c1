"""`dnnlib`: EasyDict, construct_class_by_name, open_url and friends (the toolkit's utility package)."""

from .util import EasyDict, UserError, make_cache_dir_path  # noqa: F401
