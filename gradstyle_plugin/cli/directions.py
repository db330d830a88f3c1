"""`gradstyle-directions`: compute, import and list editing directions bound to a generator.

Subcommands: `ganspace` (PCA of sampled W), `interfacegan` (linear boundary from attribute
scores), `import` (e4e/HFGI/InterfaceGAN direction files), `list` (what is registered and whether
it matches a network) and `show` (resolve one name for a network, as an editing tool would).
Directions are written into a registry folder (`--registry`, default `$GRADSTYLE_DIRECTIONS` or
`~/.cache/gradstyle/directions`) as `<dataset>_<space>/<name>.npy` plus `manifest.json`; see
`editing_directions/README.md`. The click commands only parse; the `setup_*`/`run_*` functions
below do the work and raise `dnnlib.UserError`.
"""

import os
import re

import click

import editing_directions as ed
from stylegan2_ada_pytorch import dnnlib
from stylegan2_ada_pytorch.cli.generate import parse_range
from stylegan2_ada_pytorch.dnnlib import UserError
from stylegan2_ada_pytorch.legacy import load_generator

#----------------------------------------------------------------------------
# Helpers shared by the subcommands.

def parse_layers(s):
    """'4:6' -> (4, 6); '4:' -> (4, None); ':' or '' -> (0, None). Rows [start, end) of W+."""
    if isinstance(s, tuple):
        return s
    m = re.fullmatch(r'\s*(\d*)\s*:\s*(\d*)\s*', s or ':')
    if not m:
        raise UserError(f'--layers: expected START:END (end exclusive, e.g. 4:6 or 0:), got {s!r}')
    start, end = int(m.group(1) or 0), (int(m.group(2)) if m.group(2) else None)
    if end is not None and end <= start:
        raise UserError(f'--layers: empty range {s!r} (end is exclusive)')
    return (start, end)

def network_label(network_pkl):
    """The file name of --network, recorded as the human label of the generator."""
    return os.path.basename(network_pkl.rstrip('/')) or network_pkl

def _dataset_label(dataset, network_pkl):
    return dataset if dataset else os.path.splitext(network_label(network_pkl))[0]

def _registry(registry_dir):
    return os.path.abspath(os.path.expanduser(registry_dir)) if registry_dir else ed.user_registry_dir()

def _need_file(path, flag):
    if not os.path.isfile(path):
        raise UserError(f'{flag}: no such file: {path}')

def _load(c, device='cpu'):
    return load_generator(c.network_pkl, device)

#----------------------------------------------------------------------------
# Workers (pure of click; raise UserError).

def setup_ganspace_config(network_pkl, num_samples, components, seed, name_prefix, layers, alpha, dataset, registry_dir, overwrite=False):
    """Validated options of `ganspace` as an EasyDict."""
    if num_samples < 2:
        raise UserError(f'--num-samples: must be at least 2, got {num_samples}')
    if components < 1:
        raise UserError(f'--components: must be at least 1, got {components}')
    ed.registry.check_name(f'{name_prefix}0', '--name-prefix')
    return dnnlib.EasyDict(network_pkl=network_pkl, num_samples=num_samples, components=components, seed=seed, name_prefix=name_prefix,
        layers=parse_layers(layers), alpha=alpha, dataset=_dataset_label(dataset, network_pkl), registry_dir=_registry(registry_dir),
        overwrite=overwrite)

def run_ganspace(c, device='cpu'):
    """Compute and register the components; returns the Directions."""
    G = _load(c, device)
    if c.components > G.w_dim:
        raise UserError(f'--components: the generator has w_dim {G.w_dim}, got {c.components}')
    dirs = ed.compute_ganspace(G, num_samples=c.num_samples, num_components=c.components, seed=c.seed, name_prefix=c.name_prefix,
        default_alpha=c.alpha, layers=c.layers, generator_label=network_label(c.network_pkl))
    for d in dirs:
        d.check_generator(G)
    ed.save_directions(dirs, c.registry_dir, c.dataset, overwrite=c.overwrite)
    return dirs

def setup_interfacegan_config(network_pkl, labels, latents, seeds, name, column, ratio, val_fraction, seed, alpha, dataset, registry_dir, overwrite=False,
                              negatives='bottom'):
    """Validated options of `interfacegan` as an EasyDict."""
    _need_file(labels, '--labels')
    if (latents is None) == (seeds is None):
        raise UserError('--latents/--seeds: give exactly one of them')
    if latents is not None:
        _need_file(latents, '--latents')
    if not 0 < ratio <= 0.5:
        raise UserError(f'--ratio: must be in (0, 0.5], got {ratio}')
    if not 0 < val_fraction < 1:
        raise UserError(f'--val-fraction: must be in (0, 1), got {val_fraction}')
    if negatives not in ed.interfacegan.NEGATIVES:
        raise UserError(f'--negatives: must be one of {", ".join(ed.interfacegan.NEGATIVES)}, got {negatives!r}')
    ed.registry.check_name(name, '--name')
    return dnnlib.EasyDict(network_pkl=network_pkl, labels=labels, latents=latents, seeds=seeds, name=name, column=column, ratio=ratio,
        val_fraction=val_fraction, seed=seed, alpha=alpha, dataset=_dataset_label(dataset, network_pkl), registry_dir=_registry(registry_dir),
        overwrite=overwrite, negatives=negatives)

def run_interfacegan(c, device='cpu'):
    """Fit and register the boundary; returns the Direction (its info holds the accuracies)."""
    G = _load(c, device)
    scores = ed.read_scores(c.labels, column=c.column)
    w = ed.read_latents(c.latents) if c.latents is not None else None
    num_codes = len(c.seeds) if w is None else w.shape[0]
    if num_codes != scores.shape[0]:
        what = '--latents' if w is not None else '--seeds'
        raise UserError(f'--labels: {c.labels} has {scores.shape[0]} scores but {what} gives {num_codes} codes')
    if w is not None and w.shape[1] != G.w_dim:
        raise UserError(f'--latents: {c.latents} has codes of width {w.shape[1]}, the generator has w_dim {G.w_dim}')
    d = ed.compute_interfacegan(G, scores, c.name, w=w, seeds=c.seeds if w is None else None, ratio=c.ratio, val_fraction=c.val_fraction,
        seed=c.seed, default_alpha=c.alpha, generator_label=network_label(c.network_pkl), labels_label=os.path.basename(c.labels), negatives=c.negatives)
    ed.save_directions([d], c.registry_dir, c.dataset, overwrite=c.overwrite)
    return d

def setup_import_config(file, name, network_pkl, kind, component, layers, alpha, dataset, registry_dir, overwrite=False):
    """Validated options of `import` as an EasyDict."""
    _need_file(file, 'FILE')
    ed.registry.check_name(name, '--name')
    if component is not None and component < 0:
        raise UserError(f'--component: must be >= 0, got {component}')
    return dnnlib.EasyDict(file=file, name=name, network_pkl=network_pkl, kind=kind, component=component, layers=parse_layers(layers),
        alpha=alpha, dataset=_dataset_label(dataset, network_pkl), registry_dir=_registry(registry_dir), overwrite=overwrite)

def run_import(c, device='cpu'):
    """Read the file, bind it to --network, register it; returns the Directions."""
    G = _load(c, device)
    dirs = ed.import_direction_file(c.file, c.name, G, kind=c.kind, component=c.component, layers=c.layers, default_alpha=c.alpha,
        generator_label=network_label(c.network_pkl))
    ed.save_directions(dirs, c.registry_dir, c.dataset, overwrite=c.overwrite)
    return dirs

def list_rows(registry_dirs, fingerprint=None):
    """Table rows (header first) for `list`; `fingerprint` (of --network) adds a MATCH column."""
    header = ['NAME', 'KIND', 'SPACE', 'SHAPE', 'LAYERS', 'ALPHA', 'GENERATOR', 'FINGERPRINT'] + (['MATCH'] if fingerprint else [])
    rows = [header]
    for d in ed.list_directions(registry_dirs):
        start, end = d.layers
        row = [f'{d.group}/{d.name}', d.kind, d.space, 'x'.join(str(v) for v in d.vector.shape), f'{start}:{"" if end is None else end}',
            f'{d.default_alpha:g}', d.generator or '-', ed.short_fingerprint(d.fingerprint)]
        if fingerprint:
            row.append('unbound' if d.fingerprint is None else ('yes' if d.fingerprint == fingerprint else 'no'))
        rows.append(row)
    return rows

def format_table(rows):
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return '\n'.join('  '.join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows)

def run_list(registries, network_pkl=None, device='cpu'):
    """The text `list` prints."""
    dirs = ed.default_registry_dirs(_registry(r) for r in registries)
    fingerprint = None
    lines = [f'registries: {", ".join(dirs)}']
    if network_pkl is not None:
        G = load_generator(network_pkl, device)
        fingerprint = ed.generator_fingerprint(G)
        lines.append(f'--network {network_label(network_pkl)}: fingerprint {ed.short_fingerprint(fingerprint)} (w_dim {G.w_dim}, num_ws {G.num_ws})')
    rows = list_rows(dirs, fingerprint)
    lines.append(format_table(rows) if len(rows) > 1 else 'no directions registered')
    return '\n'.join(lines)

def run_show(name, network_pkl, registries, force=False, device='cpu'):
    """Resolve `name` for --network as an editing tool would; returns the text to print."""
    G = load_generator(network_pkl, device)
    dirs = ed.default_registry_dirs(_registry(r) for r in registries)
    d = ed.resolve(name, G, dirs, force=force, generator_label=network_label(network_pkl))
    lines = [f'{d.group}/{d.describe()}', f'source: {d.source}', f'made for: {d.generator or "-"} ({ed.short_fingerprint(d.fingerprint)})']
    if not d.matches(G):
        lines.append(f'WARNING: used with --force on another generator ({ed.short_fingerprint(ed.generator_fingerprint(G))})')
    lines += [f'{key}: {value}' for key, value in sorted(d.info.items())]
    return '\n'.join(lines)

#----------------------------------------------------------------------------
# Click shell.

def _run(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except UserError as err:
        raise click.ClickException(str(err).splitlines()[0] if str(err) else type(err).__name__)

_network = click.option('--network', 'network_pkl', help='Network pickle or checkpoint of the generator', required=True, metavar='PATH')
_registry_opt = click.option('--registry', '--outdir', 'registry_dir', help='Registry folder to write  [default: $GRADSTYLE_DIRECTIONS or ~/.cache/gradstyle/directions]', metavar='DIR')
_dataset = click.option('--dataset', help='Dataset label of the group folder <dataset>_<space>  [default: --network file name]', metavar='STR')
_overwrite = click.option('--overwrite', help='Replace directions of the same name', is_flag=True)
_device = click.option('--device', help='Torch device for the mapping network', default='cpu', show_default=True, metavar='DEV')

@click.group()
def main():
    """Compute, import and list editing directions bound to a generator.

    \b
    Examples:

    \b
    # GANSpace components pc0..pc19 of your generator:
    gradstyle-directions ganspace --network ffhq.pkl --num-samples 20000 --components 20
    \b
    # An InterfaceGAN boundary from attribute scores of seeds 0-1999:
    gradstyle-directions interfacegan --network ffhq.pkl --labels smile.csv --seeds 0-1999 --name smile
    \b
    # e4e's pose direction, bound to the generator it belongs to:
    gradstyle-directions import pose.pt --name pose --network e4e_ffhq_encode.pt --dataset ffhq
    \b
    # What is registered, and what fits this network:
    gradstyle-directions list --network ffhq.pkl
    """

@main.command()
@_network
@click.option('--num-samples',  help='Number of z to sample', type=click.IntRange(min=2), default=20000, show_default=True, metavar='INT')
@click.option('--components',   help='Number of principal components to keep', type=click.IntRange(min=1), default=20, show_default=True, metavar='INT')
@click.option('--seed',         help='Random seed of the z samples', type=int, default=0, show_default=True, metavar='INT')
@click.option('--name-prefix',  help='Names are <prefix>0, <prefix>1, ...', default='pc', show_default=True, metavar='STR')
@click.option('--layers',       help='Default W+ rows to edit, START:END (end exclusive; 0: = all)', default='0:', show_default=True, metavar='RANGE')
@click.option('--alpha',        help='Default strength (coordinate in std units)', type=float, default=2.0, show_default=True, metavar='FLOAT')
@_dataset
@_registry_opt
@_overwrite
@_device
def ganspace(network_pkl, num_samples, components, seed, name_prefix, layers, alpha, dataset, registry_dir, overwrite, device):
    """GANSpace: principal components of the generator's W."""
    c = _run(setup_ganspace_config, network_pkl, num_samples, components, seed, name_prefix, layers, alpha, dataset, registry_dir, overwrite)
    dirs = _run(run_ganspace, c, device=device)
    for d in dirs:
        click.echo(f'{d.group}/{d.name}: std {d.std:.4g}, explained variance {d.info["explained_variance_ratio"]:.3f}')
    click.echo(f'wrote {len(dirs)} directions to {os.path.join(c.registry_dir, dirs[0].group)}')

@main.command()
@_network
@click.option('--labels',       help='Attribute scores, one per code (.csv or .npy)', required=True, metavar='FILE')
@click.option('--latents',      help='W codes [N, w_dim] (.npy, or .npz with w)', metavar='FILE')
@click.option('--seeds',        help='Seeds whose z give the codes, e.g. 0-1999', type=parse_range, metavar='LIST')
@click.option('--name',         help='Direction name', required=True, metavar='STR')
@click.option('--column',       help='CSV column with the scores (name or index)  [default: last]', metavar='STR')
@click.option('--ratio',        help='Fraction of top and of bottom scores used as classes', type=float, default=0.1, show_default=True, metavar='FLOAT')
@click.option('--negatives',    help='Negatives: the bottom --ratio of scores (InterfaceGAN) or an equal random sample of all codes outside the top (rest; ours, for one class of a multi-class classifier)',
              default='bottom', show_default=True, metavar='bottom|rest')
@click.option('--val-fraction', help='Fraction of the chosen codes held out', type=float, default=0.3, show_default=True, metavar='FLOAT')
@click.option('--seed',         help='Seed of the train/held-out split', type=int, default=0, show_default=True, metavar='INT')
@click.option('--alpha',        help='Default edit strength', type=float, default=3.0, show_default=True, metavar='FLOAT')
@_dataset
@_registry_opt
@_overwrite
@_device
def interfacegan(network_pkl, labels, latents, seeds, name, column, ratio, negatives, val_fraction, seed, alpha, dataset, registry_dir, overwrite, device):
    """InterfaceGAN: unit normal of a linear boundary between high and low scores."""
    c = _run(setup_interfacegan_config, network_pkl, labels, latents, seeds, name, column, ratio, val_fraction, seed, alpha, dataset, registry_dir, overwrite,
             negatives)
    d = _run(run_interfacegan, c, device=device)
    click.echo(f'{d.group}/{d.name}: held-out accuracy {d.info["val_accuracy"]:.3f} ({d.info["num_val"]} codes), '
        f'train accuracy {d.info["train_accuracy"]:.3f}')
    click.echo(f'wrote {os.path.join(c.registry_dir, d.group, d.name)}.npy')

@main.command(name='import')
@click.argument('file', metavar='FILE')
@click.option('--name',         help='Direction name (GANSpace files: prefix of <name>_pc<k>)', required=True, metavar='STR')
@_network
@click.option('--kind',         help='File kind', type=click.Choice(['auto', 'interfacegan', 'ganspace', 'custom']), default='auto', show_default=True)
@click.option('--component',    help='GANSpace: import only this component, called --name', type=int, metavar='INT')
@click.option('--layers',       help='Default W+ rows to edit, START:END (end exclusive; 0: = all)', default='0:', show_default=True, metavar='RANGE')
@click.option('--alpha',        help='Default strength  [default: 3 (interfacegan/custom), 2 (ganspace)]', type=float, metavar='FLOAT')
@_dataset
@_registry_opt
@_overwrite
@_device
def import_(file, name, network_pkl, kind, component, layers, alpha, dataset, registry_dir, overwrite, device):
    """Import an e4e/HFGI/InterfaceGAN direction file, bound to --network."""
    c = _run(setup_import_config, file, name, network_pkl, kind, component, layers, alpha, dataset, registry_dir, overwrite)
    dirs = _run(run_import, c, device=device)
    for d in dirs:
        click.echo(f'{d.group}/{d.describe()}')
    click.echo(f'wrote {len(dirs)} direction{"s" if len(dirs) > 1 else ""} to {os.path.join(c.registry_dir, dirs[0].group)}')

@main.command(name='list')
@click.option('--network', 'network_pkl', help='Show whether each direction matches this network', metavar='PATH')
@click.option('--registry', 'registries', help='Extra registry folder to search (repeatable)', multiple=True, metavar='DIR')
@_device
def list_(network_pkl, registries, device):
    """List registered directions (and whether they match --network)."""
    click.echo(_run(run_list, registries, network_pkl, device=device))

@main.command()
@click.argument('name', metavar='NAME')
@_network
@click.option('--registry', 'registries', help='Extra registry folder to search (repeatable)', multiple=True, metavar='DIR')
@click.option('--force',        help='Use a direction made for another generator', is_flag=True)
@_device
def show(name, network_pkl, registries, force, device):
    """Resolve NAME (or GROUP/NAME) for --network, checking its fingerprint."""
    click.echo(_run(run_show, name, network_pkl, registries, force=force, device=device))

#----------------------------------------------------------------------------

if __name__ == '__main__':
    main()

#----------------------------------------------------------------------------
