"""Which persistent classes a network pickle may name, and how a record's class is found.

A pickled persistent object carries only a class name and the text of the module that defined
it. The loader never runs that text; instead it maps (class name, sha256 of the text) onto one
of this process's persistent `torch.nn.Module` classes:

- the toolkit's networks (NVIDIA's stylegan2-ada-pytorch and stylegan3 `networks_stylegan2.py`
  sources, our own `networks.py`, or any fork using the same class names);
- `AugmentPipe` (NVIDIA's augment.py sources, ours, or the same class name);
- other classes of the toolkit package `stylegan2_ada_pytorch` (found by module source);
- classes that an installed distribution declares in one of the registry's two entry-point groups
  (`stylegan2_ada_pytorch.injectors`, `stylegan2_ada_pytorch.persistent_classes`). No plugin is
  named here: GradStyle is allowed exactly as any third-party plugin is, by declaring its classes.

Dotted `class_name` strings inside init kwargs (injector specs, a wrapper's sub-network kwargs) are
checked the same way, before anything is imported. StyleGAN3 (alias-free) networks are refused.
"""

import importlib
import importlib.util
import os
import tokenize

import torch

from . import registry
from .torch_utils import persistence
from .torch_utils.persistence import UnsafePickleError

#----------------------------------------------------------------------------

NV_NETWORKS_ADA = '53b4e1ec457171d4e2c1454d48013765ab626141c35cdd383b020950effe11a5'
NV_NETWORKS_SG3_STYLEGAN2 = 'b6f14e8fa2a95de4d38218fef31380c6a70de770f585107e209ff83075c307ef'
NV_NETWORKS_SG3_STYLEGAN3 = '06082fb3e8929e477f58fb8bc78e7ecb9a9209eb01444272d1d153c85a6a89f7'
NV_AUGMENT = {'77eb17876bc7ba87cdc9281caf925daf507ce0937b84d0f32134d4d08e13061e',
              '43c6b98bc68d5d214dd2e2775a10eb007dee034c005766fbc310005147bfb788'}

NETWORK_CLASSES = ('Generator', 'Discriminator', 'MappingNetwork', 'SynthesisNetwork', 'SynthesisBlock',
    'SynthesisLayer', 'ToRGBLayer', 'FullyConnectedLayer', 'Conv2dLayer', 'DiscriminatorBlock',
    'DiscriminatorEpilogue', 'MinibatchStdLayer')
ALLOWED_PACKAGES = ('stylegan2_ada_pytorch',)      # the toolkit itself; plugins come in through entry points
_DECLARE_HINT = (f'declare the class in the entry-point group "{registry.PERSISTENT_CLASSES_GROUP}" '
    f'(or "{registry.INJECTORS_GROUP}" for an injector) of the plugin that defines it')
_NETWORKS_MODULE = 'stylegan2_ada_pytorch.networks'
_AUGMENT_MODULE = 'stylegan2_ada_pytorch.training.augment'

#----------------------------------------------------------------------------

def _import_attr(module_name, class_name, why):
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise UnsafePickleError(f'{why}: {module_name}.{class_name} is not available ({err})') from None
    return getattr(module, class_name, None)

def _check_persistent_module_class(cls, dotted):
    if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module) and persistence.is_persistent(cls)):
        raise UnsafePickleError(f'{dotted} is not a persistent torch.nn.Module class')
    return cls

def own_source_fingerprint(module_name):
    """Fingerprint of the source our persistence stores for an (importable) module of ours."""
    module = importlib.import_module(module_name)
    return persistence.source_fingerprint(persistence._module_to_src(module))

def _entry_point_classes():
    return registry.declared_class_names()

#----------------------------------------------------------------------------
# Dotted class_name strings (inside init kwargs).

def _allowed_prefix(module_name):
    return any(module_name == p or module_name.startswith(p + '.') for p in ALLOWED_PACKAGES)

def resolve_class_name(dotted, where='init kwargs'):
    """Resolve a dotted `class_name` from init kwargs to an allow-listed persistent Module class."""
    if not isinstance(dotted, str) or '.' not in dotted or not all(p.isidentifier() for p in dotted.split('.')):
        raise UnsafePickleError(f'{where}: invalid class_name {dotted!r}')
    module_name, class_name = dotted.rsplit('.', 1)
    if not (_allowed_prefix(module_name) or dotted in _entry_point_classes()):
        raise UnsafePickleError(f'{where}: refusing class_name {dotted!r} (not a toolkit class, not declared by '
            f'an installed plugin; {_DECLARE_HINT})')
    cls = _import_attr(module_name, class_name, where)
    return _check_persistent_module_class(cls, dotted)

def check_class_names(obj, where):
    """Resolve every `class_name` value found anywhere inside nested dicts/lists `obj`."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key == 'class_name':
                resolve_class_name(value, where)
            else:
                check_class_names(value, f'{where}.{key}')
    elif isinstance(obj, (list, tuple)):
        for i, item in enumerate(obj):
            check_class_names(item, f'{where}[{i}]')

#----------------------------------------------------------------------------
# Top-level records: (class_name, fingerprint) -> (class, layout).

def _scan_allowed_sources(fingerprint):
    """Module name inside the toolkit package whose stored source has this fingerprint, or None."""
    for package in ALLOWED_PACKAGES:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            continue
        for root_dir in spec.submodule_search_locations:
            for dirpath, _dirs, files in os.walk(root_dir):
                for fname in sorted(files):
                    if not fname.endswith('.py'):
                        continue
                    rel = os.path.relpath(os.path.join(dirpath, fname), root_dir)[:-3].replace(os.sep, '.')
                    name = package if rel == '__init__' else f'{package}.{rel.removesuffix(".__init__")}'
                    parent = name if fname == '__init__.py' else name.rpartition('.')[0]
                    with tokenize.open(os.path.join(dirpath, fname)) as f:
                        src = persistence.toolkit_import_spelling(f.read(), parent)
                    if persistence.source_fingerprint(src) == fingerprint:
                        return name
    return None

def _loaded_module_for(fingerprint, class_name, declared):
    # An imported module with exactly this source: the toolkit's, or a plugin module declaring the class.
    for src, module in list(persistence._src_to_module_dict.items()):
        if persistence.source_fingerprint(src) != fingerprint:
            continue
        if _allowed_prefix(module.__name__) or f'{module.__name__}.{class_name}' in declared:
            return module.__name__
    return None

def _module_from_entry_points(class_name, fingerprint, declared):
    """The module of the declared class called `class_name`; among several, the one whose source matches."""
    modules = sorted({d.rsplit('.', 1)[0] for d in declared if d.rsplit('.', 1)[1] == class_name})
    if len(modules) <= 1:
        return modules[0] if modules else None
    for module_name in modules:
        try:
            if own_source_fingerprint(module_name) == fingerprint:
                return module_name
        except Exception:
            continue
    raise UnsafePickleError(f'persistent class {class_name!r} is declared by several plugins ({", ".join(modules)}) and '
        'none has the module source stored in the file')

def _network_layout(fingerprint):
    if fingerprint == NV_NETWORKS_SG3_STYLEGAN2:
        return 'sg3'
    if fingerprint in (NV_NETWORKS_ADA, own_source_fingerprint(_NETWORKS_MODULE)):
        return 'ada'
    return 'auto'  # a fork of networks.py: decided from the kwargs layout

def resolve_record_class(record):
    """Return (class, layout) for a top-level record; layout is 'ada', 'sg3', 'auto' or None."""
    name, fp = record.class_name, record.fingerprint
    if fp == NV_NETWORKS_SG3_STYLEGAN3:
        raise UnsafePickleError(f'{name} is a StyleGAN3 (alias-free) network from stylegan3 networks_stylegan3.py; '
            'only StyleGAN2 / StyleGAN2-ADA networks are supported')
    if name in NETWORK_CLASSES:
        cls = _import_attr(_NETWORKS_MODULE, name, f'network class {name}')
        return _check_persistent_module_class(cls, f'{_NETWORKS_MODULE}.{name}'), _network_layout(fp)
    if name == 'AugmentPipe' or fp in NV_AUGMENT:
        cls = _import_attr(_AUGMENT_MODULE, name, f'persistent class {name}')
        return _check_persistent_module_class(cls, f'{_AUGMENT_MODULE}.{name}'), None
    declared = _entry_point_classes()
    module_name = (_loaded_module_for(fp, name, declared) or _module_from_entry_points(name, fp, declared)
        or _scan_allowed_sources(fp))
    if module_name is None:
        raise UnsafePickleError(f'unknown persistent class {name!r} (module source sha256 {fp[:16]}...): not a toolkit '
            f'class and not declared by an installed plugin; {_DECLARE_HINT}')
    cls = _import_attr(module_name, name, f'persistent class {name}')
    return _check_persistent_module_class(cls, f'{module_name}.{name}'), None

#----------------------------------------------------------------------------
