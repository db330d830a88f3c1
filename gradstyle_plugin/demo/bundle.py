"""The demo bundle: a really trained Fashion-MNIST GradStyle network shipped inside the package.

A bundle is a folder of data files plus `MANIFEST.json` (format `gradstyle-demo-bundle/1`):

    format       'gradstyle-demo-bundle/1'
    roles        {role: relative path}: network (GradStyle snapshot: G_ema with stages + encoder),
                 classifier (gradstyle-classifier/1 file), directions (registry folder),
                 images (folder of held-out real test images), report (gradstyle-eval JSON),
                 plus anything else the build recorded (build log, curves)
    files        {relative path: {sha256, bytes}}: every file of the bundle but the manifest
    provenance   plain data: how each file was made (commands, kimg, seeds, figures)

`load_bundle()` checks every listed file's size and sha256 before anything is read, refuses paths
that leave the folder, and is the only way the commands open the bundle; the network itself is
then read by the toolkit's safe loader like any other file. `resolve_network('demo')` turns the
name `demo` (gradstyle-edit --network demo, gradstyle-eval --network demo) into the bundled path.

Example:
    >>> from gradstyle_plugin.demo import load_bundle
    >>> b = load_bundle()                        # sha256 of every file checked
    >>> b.path('network'), b.path('classifier'), b.provenance['generator']['fid2k_pix']
"""

import dataclasses
import json
import os

from stylegan2_ada_pytorch import dnnlib
from stylegan2_ada_pytorch.dnnlib import UserError

FORMAT = 'gradstyle-demo-bundle/1'
MANIFEST_NAME = 'MANIFEST.json'
BUNDLE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'bundle')
DEMO_NAME = 'demo'
REQUIRED_ROLES = ('network', 'classifier', 'directions', 'images', 'report')

#----------------------------------------------------------------------------

@dataclasses.dataclass
class Bundle:
    """A checked bundle (in memory only): its folder, roles, file hashes and provenance."""
    root:       str
    roles:      dict
    files:      dict
    provenance: dict

    def path(self, role):
        """Absolute path of a role ('network', 'classifier', 'directions', 'images', 'report', ...)."""
        if role not in self.roles:
            raise UserError(f'demo bundle {self.root}: no {role!r} in {MANIFEST_NAME} (has {", ".join(sorted(self.roles))})')
        return os.path.join(self.root, self.roles[role])

    def images(self):
        """Sorted absolute paths of the bundled held-out images."""
        folder = self.roles['images'].rstrip('/') + '/'
        return [os.path.join(self.root, rel) for rel in sorted(self.files) if rel.startswith(folder)]

def _inside(root, rel, what):
    full = os.path.realpath(os.path.join(root, rel))
    if os.path.isabs(rel) or not full.startswith(os.path.realpath(root) + os.sep):
        raise UserError(f'demo bundle {root}: {MANIFEST_NAME} names {what} {rel!r} outside the bundle folder')
    return full

def list_bundle_files(root):
    """Sorted relative paths ('/'-separated) of every file under root except the manifest."""
    found = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d != '__pycache__')
        for name in names:
            rel = os.path.relpath(os.path.join(folder, name), root).replace(os.sep, '/')
            if rel != MANIFEST_NAME:
                found.append(rel)
    return sorted(found)

def write_manifest(root, roles, provenance):
    """Hash every file under root and write MANIFEST.json atomically; returns the manifest dict.

    Example:
        >>> write_manifest('bundle', dict(network='network.pkl', classifier='classifier.pt',
        ...     directions='directions', images='images', report='eval/report.json'), {'built': '...'})
    """
    missing = [r for r in REQUIRED_ROLES if r not in roles]
    if missing:
        raise ValueError(f'write_manifest: roles missing: {", ".join(missing)}')
    for role, rel in roles.items():
        if not os.path.exists(_inside(root, rel, f'role {role}')):
            raise ValueError(f'write_manifest: role {role}: {rel} does not exist under {root}')
    files = {rel: dict(sha256=dnnlib.util.file_sha256(os.path.join(root, rel)), bytes=os.path.getsize(os.path.join(root, rel)))
        for rel in list_bundle_files(root)}
    manifest = dict(format=FORMAT, roles=dict(roles), files=files, provenance=provenance)
    with dnnlib.util.atomic_write(os.path.join(root, MANIFEST_NAME), 'w') as f:
        json.dump(manifest, f, indent=2, sort_keys=True)
    return manifest

def load_bundle(root=None, flag='--network'):
    """Read MANIFEST.json and check every listed file (size, sha256); a Bundle or a one-line UserError."""
    root = os.path.abspath(root or BUNDLE_DIR)
    where = f'{flag} {DEMO_NAME}: bundle {root}'
    manifest_path = os.path.join(root, MANIFEST_NAME)
    if not os.path.isfile(manifest_path):
        raise UserError(f'{where}: no {MANIFEST_NAME} (the demo bundle is not installed; build it with scripts/build_demo_bundle.py)')
    try:
        with open(manifest_path, encoding='utf-8') as f:
            manifest = json.load(f)
    except (OSError, ValueError) as err:
        raise UserError(f'{where}: {MANIFEST_NAME} is not readable JSON ({err})')
    if not isinstance(manifest, dict) or manifest.get('format') != FORMAT:
        raise UserError(f'{where}: {MANIFEST_NAME} is not a {FORMAT} manifest')
    files, roles = manifest.get('files'), manifest.get('roles')
    if not isinstance(files, dict) or not isinstance(roles, dict) or any(r not in roles for r in REQUIRED_ROLES):
        raise UserError(f'{where}: {MANIFEST_NAME} lacks files or one of the roles {", ".join(REQUIRED_ROLES)}')
    for rel, entry in sorted(files.items()):
        full = _inside(root, rel, 'file')
        if not os.path.isfile(full):
            raise UserError(f'{where}: {rel} is missing')
        if os.path.getsize(full) != entry.get('bytes') or dnnlib.util.file_sha256(full) != entry.get('sha256'):
            raise UserError(f'{where}: {rel} does not match its sha256 in {MANIFEST_NAME} (modified or truncated file)')
    for role, rel in roles.items():
        _inside(root, rel, f'role {role}')
        if rel not in files and not any(name.startswith(rel.rstrip('/') + '/') for name in files):
            raise UserError(f'{where}: role {role} ({rel}) is not among the checked files')
    return Bundle(root=root, roles=roles, files=files, provenance=manifest.get('provenance', {}))

def is_demo(value):
    """True when `value` names the bundled demo ('demo', and no file or folder of that name is here)."""
    return value is not None and os.fspath(value) == DEMO_NAME and not os.path.exists(DEMO_NAME)

def resolve_network(value, flag='--network'):
    """`value` unchanged, or the checked bundle's network path when value is 'demo'."""
    return load_bundle(flag=flag).path('network') if is_demo(value) else value

def resolve_demo(network, registries=(), flag='--network'):
    """(network path, registry folders): for 'demo' the checked bundle's network, its directions folder appended.

    Example (what gradstyle-edit and gradstyle-eval do with --network demo):
        >>> network, registries = resolve_demo('demo', ['my_directions'])
        >>> os.path.basename(network), os.path.basename(registries[-1])
        ('network.pkl', 'directions')
    """
    if not is_demo(network):
        return network, list(registries)
    b = load_bundle(flag=flag)
    return b.path('network'), list(registries) + [b.path('directions')]

#----------------------------------------------------------------------------
