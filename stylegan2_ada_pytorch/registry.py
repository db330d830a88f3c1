"""Discovery of injector plugins through the entry-point group `stylegan2_ada_pytorch.injectors`.

A plugin distribution declares its injector classes in its pyproject.toml:

    [project.entry-points."stylegan2_ada_pytorch.injectors"]
    grm = "gradstyle_plugin.grm:GradualResidualModule"

Nothing is registered by importing anything: the list comes from installed package metadata.
`list_injectors()` reads that metadata without importing plugin code, `load_injector(name)`
imports exactly one entry, and `injector_class_name(name)` gives the dotted `class_name` string
that `injector_kwargs` and the safe network loader use. Two distributions declaring the same
name is an error that names both (never a silent override).
"""

import importlib.metadata

GROUP = 'stylegan2_ada_pytorch.injectors'

class RegistryError(RuntimeError):
    """A problem with the declared injector entry points (duplicate, unknown or broken entry)."""

#----------------------------------------------------------------------------

def _dist_name(ep):
    dist = getattr(ep, 'dist', None)
    return dist.name if dist is not None else '<unknown distribution>'

def _entry_points():
    return importlib.metadata.entry_points(group=GROUP)

def list_injectors():
    """Return `{name: EntryPoint}` for every declared injector; imports no plugin code.

    Example:
        >>> from stylegan2_ada_pytorch import registry
        >>> sorted(registry.list_injectors())
        ['gam', 'grm']
        >>> registry.list_injectors()['grm'].value
        'gradstyle_plugin.grm:GradualResidualModule'

    Raises RegistryError if two distributions declare the same name.
    """
    found = {}
    for ep in _entry_points():
        if ep.name in found:
            other = found[ep.name]
            raise RegistryError(f'injector name {ep.name!r} is declared twice: by {_dist_name(other)} '
                f'({other.value}) and by {_dist_name(ep)} ({ep.value}); uninstall or rename one')
        found[ep.name] = ep
    return found

def _get_entry(name):
    entries = list_injectors()
    if name not in entries:
        known = ', '.join(sorted(entries)) or 'none installed'
        raise RegistryError(f'unknown injector {name!r}; known injectors: {known}')
    return entries[name]

def load_injector(name):
    """Import and return the injector class declared under `name`.

    Example:
        >>> GRM = registry.load_injector('grm')
        >>> inj = GRM(channels=512)

    Raises RegistryError for an unknown name (listing the known ones) or when the import fails
    (naming the distribution that declared the entry).
    """
    ep = _get_entry(name)
    try:
        return ep.load()
    except Exception as err:
        raise RegistryError(f'injector {name!r} from distribution {_dist_name(ep)} failed to import '
            f'{ep.value}: {type(err).__name__}: {err}') from err

def injector_class_name(name):
    """The dotted 'module.Class' string for `name`, as `class_name` in `injector_kwargs` expects.

    Example:
        >>> registry.injector_class_name('grm')
        'gradstyle_plugin.grm.GradualResidualModule'
        >>> spec = dnnlib.EasyDict(class_name=registry.injector_class_name('grm'), channels=512)
    """
    return entry_class_name(_get_entry(name))

def entry_class_name(ep):
    """'module:Class' of an entry point -> 'module.Class' (no import)."""
    module, sep, attr = ep.value.partition(':')
    if not sep or not attr.strip() or '[' in attr:
        raise RegistryError(f'injector entry point {ep.name!r} of {_dist_name(ep)} must have the form '
            f'"module:Class", got {ep.value!r}')
    return f'{module.strip()}.{attr.strip()}'

#----------------------------------------------------------------------------
