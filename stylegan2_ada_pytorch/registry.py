"""Plugin discovery through two entry-point groups, the same for every plugin (GradStyle included).

- `stylegan2_ada_pytorch.injectors`: injector classes (modules run between synthesis blocks,
  declared in `injector_kwargs`);
- `stylegan2_ada_pytorch.persistent_classes`: any other persistent `torch.nn.Module` class that a
  network pickle or snapshot may hold (an encoder, a wrapper holding G and an encoder, a loss
  network kept in a snapshot, and the submodule classes they are built from).

A plugin distribution declares its classes in its pyproject.toml:

    [project.entry-points."stylegan2_ada_pytorch.injectors"]
    grm = "gradstyle_plugin.grm:GradualResidualModule"

    [project.entry-points."stylegan2_ada_pytorch.persistent_classes"]
    my_encoder = "my_plugin.encoder:MyEncoder"

Nothing is registered by importing anything: the lists come from installed package metadata.
`list_injectors()` / `list_persistent_classes()` read that metadata without importing plugin
code, `load_injector(name)` / `load_persistent_class(name)` import exactly one entry, and
`injector_class_name(name)` gives the dotted `class_name` string that `injector_kwargs` uses. The
safe network loader (`legacy.load_network_pkl`) rebuilds only the toolkit's own classes and the
classes declared in these two groups (`declared_class_names()`). Two distributions declaring the
same name in one group is an error that names both (never a silent override).
"""

import importlib.metadata

INJECTORS_GROUP = 'stylegan2_ada_pytorch.injectors'
PERSISTENT_CLASSES_GROUP = 'stylegan2_ada_pytorch.persistent_classes'
GROUPS = (INJECTORS_GROUP, PERSISTENT_CLASSES_GROUP)
GROUP = INJECTORS_GROUP     # the injector group (the name older code used)

class RegistryError(RuntimeError):
    """A problem with the declared entry points (duplicate, unknown or broken entry)."""

#----------------------------------------------------------------------------

def _dist_name(ep):
    dist = getattr(ep, 'dist', None)
    return dist.name if dist is not None else '<unknown distribution>'

def _entry_points(group):
    return importlib.metadata.entry_points(group=group)

def _what(group, plural=False):
    if group == INJECTORS_GROUP:
        return 'injectors' if plural else 'injector'
    return 'persistent classes' if plural else 'persistent class'

def _list(group):
    found = {}
    for ep in _entry_points(group):
        if ep.name in found:
            other = found[ep.name]
            raise RegistryError(f'{_what(group)} name {ep.name!r} is declared twice in "{group}": by {_dist_name(other)} '
                f'({other.value}) and by {_dist_name(ep)} ({ep.value}); uninstall or rename one')
        found[ep.name] = ep
    return found

def _get_entry(group, name):
    entries = _list(group)
    if name not in entries:
        known = ', '.join(sorted(entries)) or 'none installed'
        raise RegistryError(f'unknown {_what(group)} {name!r}; known {_what(group, plural=True)}: {known}')
    return entries[name]

def _load(group, name):
    ep = _get_entry(group, name)
    try:
        return ep.load()
    except Exception as err:
        raise RegistryError(f'{_what(group)} {name!r} from distribution {_dist_name(ep)} failed to import '
            f'{ep.value}: {type(err).__name__}: {err}') from err

#----------------------------------------------------------------------------
# Injectors.

def list_injectors():
    """Return `{name: EntryPoint}` for every declared injector; imports no plugin code.

    Example:
        >>> from stylegan2_ada_pytorch import registry
        >>> sorted(registry.list_injectors())
        ['gradstyle_stage']
        >>> registry.list_injectors()['gradstyle_stage'].value
        'gradstyle_plugin.stage:GradStyleStage'

    Raises RegistryError if two distributions declare the same name.
    """
    return _list(INJECTORS_GROUP)

def load_injector(name):
    """Import and return the injector class declared under `name`.

    Example:
        >>> Stage = registry.load_injector('gradstyle_stage')

    Raises RegistryError for an unknown name (listing the known ones) or when the import fails
    (naming the distribution that declared the entry).
    """
    return _load(INJECTORS_GROUP, name)

def injector_class_name(name):
    """The dotted 'module.Class' string for `name`, as `class_name` in `injector_kwargs` expects.

    Example:
        >>> registry.injector_class_name('gradstyle_stage')
        'gradstyle_plugin.stage.GradStyleStage'
        >>> spec = dnnlib.EasyDict(class_name=registry.injector_class_name('gradstyle_stage'), channels=512, ...)
    """
    return entry_class_name(_get_entry(INJECTORS_GROUP, name))

#----------------------------------------------------------------------------
# Other persistent classes.

def list_persistent_classes():
    """Return `{name: EntryPoint}` for every declared persistent (non-injector) class; imports nothing.

    Example:
        >>> registry.list_persistent_classes()['gradstyle_e4e_encoder'].value
        'gradstyle_plugin.encoder:E4EEncoder'
    """
    return _list(PERSISTENT_CLASSES_GROUP)

def load_persistent_class(name):
    """Import and return the persistent class declared under `name` (RegistryError as load_injector)."""
    return _load(PERSISTENT_CLASSES_GROUP, name)

def persistent_class_name(name):
    """The dotted 'module.Class' string of the persistent class declared under `name`."""
    return entry_class_name(_get_entry(PERSISTENT_CLASSES_GROUP, name))

#----------------------------------------------------------------------------

def entry_class_name(ep):
    """'module:Class' of an entry point -> 'module.Class' (no import)."""
    module, sep, attr = ep.value.partition(':')
    if not sep or not attr.strip() or '[' in attr:
        raise RegistryError(f'entry point {ep.name!r} of {_dist_name(ep)} must have the form '
            f'"module:Class", got {ep.value!r}')
    return f'{module.strip()}.{attr.strip()}'

def declared_class_names():
    """Every dotted 'module.Class' declared in either group (what the safe loader may rebuild); imports nothing.

    Malformed entries are left out (they cannot name a class); duplicate names do not matter here.
    """
    names = set()
    for group in GROUPS:
        for ep in _entry_points(group):
            try:
                names.add(entry_class_name(ep))
            except RegistryError:
                pass
    return names

#----------------------------------------------------------------------------
