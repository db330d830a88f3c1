"""`gradstyle-edit`: invert photos and edit them along named directions, with GradStyle or e4e alone.

For each input image it writes `<outdir>/<stem>/`: `reconstruction.png`,
`<direction>_<alpha>.png` per edit, `grid.png` (one row per direction; columns: source,
reconstruction, the edits in alpha order; every cell at the network resolution) and `ws.npy` (the
W+ codes [num_ws, w_dim], float32); plus `<outdir>/edits.json`, a summary of the run, which in
gradstyle mode also states the aligner's identity error per stage, |F' - F|_1 / |F|_1 on unwarped
residuals at alpha 0 (per input and averaged; 0 is a perfect identity). `--edit smile:2,pose:-1.5`
adds a composite edit (several directions in one pass; one of them may sweep START:STOP:COUNT),
written as `smile_2+pose_-1.5.png` and as one more grid row. `--stages` / `--gate-scale` are the
per-stage knobs, recorded in edits.json. With `--align` each photo is first FFHQ-aligned (offline
landmarks, the [align] extra; see gradstyle_plugin/align) and the transform goes into edits.json;
`--paste-back` also writes every output un-aligned into the photo as `<name>_pasted.png`, at the
photo's size (feathered mask, or `--mask FILE` in crop space). Every file is
written under a temporary name and renamed. Exit status: 0 when every input was edited, 1 when some
were skipped (unreadable files; the others are still written), 2 for usage errors (bad flags,
files, directions).

The click command only parses; `setup_edit_config()` (pure, no network loaded) and `run_edit()`
do the work and raise `dnnlib.UserError`. See `gradstyle_plugin/edit.py` for the Python API.
"""

import json
import os
import re

import click
import numpy as np
import torch

import editing_directions as ed
from stylegan2_ada_pytorch import dnnlib
from stylegan2_ada_pytorch.dnnlib import UserError
from stylegan2_ada_pytorch.images import SkipImage, read_image, save_image, to_uint8
from gradstyle_plugin import edit as gse
from gradstyle_plugin.align import FaceFinder, align_file, paste_back, require_mediapipe
from gradstyle_plugin.align.paste import FEATHER
from gradstyle_plugin.cli.directions import network_label
from gradstyle_plugin.cli.edit_options import (composite_cells, composite_label, composite_name, parse_composite, parse_gate_scale,
    parse_stages)

SUMMARY_NAME = 'edits.json'

#----------------------------------------------------------------------------
# Parsing.

def _clean(value):
    # Round away linspace noise (0.30000000000000004 -> 0.3) and turn -0.0 into 0.0.
    return float(f'{value:.12g}') + 0.0

def parse_alphas(s):
    """'2' -> [2.0]; '-1,0,1.5' -> [-1.0, 0.0, 1.5]; '-3:3:7' -> 7 values from -3 to 3 (ends included)."""
    if isinstance(s, (list, tuple)):
        return [_clean(float(v)) for v in s]
    text = str(s).strip()
    try:
        if ':' in text:
            start, stop, count = text.split(':')
            count = int(count)
            if count < 1:
                raise UserError(f'--alpha: a sweep START:STOP:COUNT needs COUNT >= 1, got {text!r}')
            values = np.linspace(float(start), float(stop), count).tolist()
        else:
            values = [float(v) for v in text.split(',')]
    except ValueError:
        raise UserError(f'--alpha: expected a number, a comma list (-1,0,1) or a sweep START:STOP:COUNT (-3:3:7), got {text!r}')
    values = [_clean(v) for v in values]
    if not all(np.isfinite(values)):
        raise UserError(f'--alpha: values must be finite, got {text!r}')
    labels = [alpha_label(v) for v in values]
    if len(set(labels)) != len(labels):
        raise UserError(f'--alpha: {text!r} repeats a value (file names {", ".join(labels)})')
    return values

def alpha_label(alpha):
    """The alpha part of an output file name: 3 -> '3', -1.5 -> '-1.5', 0.25 -> '0.25'."""
    return f'{_clean(alpha):g}'

def direction_file_name(path):
    """Direction name for --direction-file: the file name without extension, lower case, [a-z0-9_-] only."""
    stem = os.path.splitext(os.path.basename(path))[0].lower()
    return re.sub(r'[^a-z0-9_-]+', '_', stem).strip('_') or 'direction'

#----------------------------------------------------------------------------
# Configuration (pure: no network is loaded).

def _need_path(path, flag, folder_ok=False):
    if path is None:
        return None
    if not (os.path.isfile(path) or (folder_ok and os.path.isdir(path))):
        raise UserError(f'{flag}: no such file{" or folder" if folder_ok else ""}: {path}')
    return os.path.abspath(path) if folder_ok else path

def setup_edit_config(network_pkl, encoder, input, directions=(), direction_files=(), alpha=None, outdir=None, batch=4,
                      device=None, seed=0, registries=(), force=False, alpha0_shortcut=False, edits=(), stages=None, gate_scale=None,
                      align_faces=False, face_index=0, paste_back=False, mask=None):
    """Validated options of `gradstyle-edit` as an EasyDict (JSON-serialisable; printed by --dry-run)."""
    from gradstyle_plugin.demo.bundle import resolve_demo
    network_pkl, registries = resolve_demo(network_pkl, registries)
    if not re.match('^[a-z]+://', network_pkl or ''):
        _need_path(network_pkl, '--network')
    _need_path(encoder, '--encoder')
    _need_path(input, '--input', folder_ok=True)
    if not directions and not direction_files and not edits:
        raise UserError('--direction: give at least one --direction NAME, --direction-file FILE or --edit NAME:ALPHA,...')
    for path in direction_files:
        _need_path(path, '--direction-file')
    if outdir is None:
        raise UserError('--outdir: required')
    if batch < 1:
        raise UserError(f'--batch: must be at least 1, got {batch}')
    file_names = [direction_file_name(path) for path in direction_files]
    names = [n.rpartition('/')[2] for n in directions] + file_names
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise UserError(f'--direction/--direction-file: the name {repeated[0]!r} is given twice (output files would clash)')
    entries, ignored = gse.list_images(input)
    if not entries:
        raise UserError(f'--input: no images in {input} (ignored: {", ".join(ignored[:5]) or "nothing"})')
    return dnnlib.EasyDict(network_pkl=network_pkl, encoder=encoder, input=input, inputs=[e.name for e in entries], ignored=ignored,
        directions=list(directions), direction_files=[dict(file=p, name=n) for p, n in zip(direction_files, file_names)],
        alphas=None if alpha is None else parse_alphas(alpha), outdir=os.path.abspath(outdir), batch=int(batch),
        device=device or ('cuda' if torch.cuda.is_available() else 'cpu'), seed=int(seed),
        registries=[os.path.abspath(os.path.expanduser(r)) for r in registries], force=bool(force),
        alpha0_shortcut=bool(alpha0_shortcut), edits=[parse_composite(e, parse_alphas) for e in edits],
        stages=parse_stages(stages), gate_scale=parse_gate_scale(gate_scale), **_align_options(align_faces, face_index, paste_back, mask))

def _align_options(align_faces, face_index, paste_back, mask):
    if paste_back and not align_faces:
        raise UserError('--paste-back: needs --align (the transform of the aligned crop is what is undone)')
    if mask is not None and not paste_back:
        raise UserError('--mask: only used with --paste-back')
    _need_path(mask, '--mask')
    if align_faces:
        require_mediapipe('--align')
    if face_index < 0:
        raise UserError(f'--face-index: must be 0 (the largest face) or more, got {face_index}')
    return dict(align=bool(align_faces), face_index=int(face_index), paste_back=bool(paste_back), mask=mask,
        feather=FEATHER if paste_back else None)

#----------------------------------------------------------------------------
# Directions bound to the loaded generator.

def resolve_directions(c, G):
    """[Direction]: --direction names from the registries (fingerprint checked), then --direction-file files."""
    label = network_label(c.network_pkl)
    dirs = ed.default_registry_dirs(c.registries)
    found = []
    for name in c.directions:
        try:
            found.append(ed.resolve(name, G, dirs, force=c.force, generator_label=label))
        except ed.DirectionError as err:
            raise UserError(f'--direction {name}: {err}')
    for item in c.direction_files:
        try:
            found += ed.import_direction_file(item['file'], item['name'], G, generator_label=label)
        except ed.DirectionError as err:
            raise UserError(f'--direction-file {item["file"]}: {err}')
    return found

def resolve_composites(c, G, directions):
    """[(composite items, [Direction per item])]: --edit names among the --direction/--direction-file ones, else the registries."""
    by_name = {d.name: d for d in directions}
    dirs = ed.default_registry_dirs(c.registries)
    out = []
    for items in c.get('edits', []):
        bound = []
        for item in items:
            name = item['name']
            try:
                bound.append(by_name.get(name) or ed.resolve(name, G, dirs, force=c.force, generator_label=network_label(c.network_pkl)))
            except ed.DirectionError as err:
                raise UserError(f'--edit {name}: {err}')
        out.append((items, bound))
    return out

def direction_alphas(c, direction):
    """--alpha values, or the direction's default strength when --alpha is not given."""
    return list(c.alphas) if c.alphas is not None else [_clean(direction.default_alpha)]

#----------------------------------------------------------------------------
# Atomic output.

def write_png(path, arr):
    """uint8 [H, W, C] (C = 1 or 3) -> PNG, atomically."""
    save_image(path, arr)

def write_npy(path, arr):
    with dnnlib.util.atomic_write(path) as f:
        np.save(f, np.ascontiguousarray(arr, dtype='<f4'), allow_pickle=False)

def write_json(path, data):
    with dnnlib.util.atomic_write(path, 'w') as f:
        f.write(json.dumps(data, indent=2) + '\n')

def make_grid(rows):
    """Cells uint8 [R, R, C] in rows of equal length -> one uint8 image [rows * R, cols * R, C]."""
    return np.concatenate([np.concatenate(row, axis=1) for row in rows], axis=0)

#----------------------------------------------------------------------------
# The run.

def _grid_rows(source, img_rec, rows):
    # One row per direction / composite: source, reconstruction, its cells; short rows padded with black cells.
    width = max(len(cells) for _name, cells in rows) if rows else 0
    blank = np.zeros_like(img_rec)
    return [[source, img_rec] + [img for _n, _k, img in cells] + [blank] * (width - len(cells)) for _name, cells in rows]

def _write_outputs(c, stem, source, img_rec, ws, rows, aligned=None, mask=None):
    """Write one input's files; `rows` = [(row name, [(file name, key, uint8 image)])]. Returns {kind: relative path}.

    With `aligned` = (photo, AlignedFace) and --paste-back, every image also goes back into the photo as <name>_pasted.png.
    """
    folder = os.path.join(c.outdir, stem)
    os.makedirs(folder, exist_ok=True)
    written = dict(reconstruction=f'{stem}/reconstruction.png', grid=f'{stem}/grid.png', ws=f'{stem}/ws.npy', edits={})
    images = [('reconstruction', 'reconstruction', img_rec)] + [cell for _row, cells in rows for cell in cells]
    for name, key, img in images:
        write_png(os.path.join(folder, f'{name}.png'), img)
        if key != 'reconstruction':
            written['edits'][key] = f'{stem}/{name}.png'
    if aligned is not None and c.get('paste_back'):
        photo, face = aligned
        written['pasted'] = {}
        for name, key, img in images:
            write_png(os.path.join(folder, f'{name}_pasted.png'), paste_back(photo, img, face.transform, mask=mask, feather=c.feather))
            written['pasted'][key] = f'{stem}/{name}_pasted.png'
    write_png(os.path.join(folder, 'grid.png'), make_grid(_grid_rows(source, img_rec, rows)))
    write_npy(os.path.join(folder, 'ws.npy'), ws)
    return written

def _edit_rows(c, editor, directions, composites, inv):
    """[(row name, [(file name, key, uint8 [N, R, R, C])])] of every direction sweep and composite edit of a batch."""
    rows = []
    for d in directions:
        cells = [(f'{d.name}_{alpha_label(a)}', f'{d.name}@{alpha_label(a)}', editor.edit_codes(inv, d, a)[1]) for a in direction_alphas(c, d)]
        rows.append((d.name, cells))
    for items, bound in composites:
        cells = []
        for alphas in composite_cells(items):
            img = editor.composite_edit_codes(inv, list(zip(bound, alphas)))[1]
            key = '+'.join(f'{d.name}@{alpha_label(a)}' for d, a in zip(bound, alphas))
            cells.append((composite_label(items, alphas, alpha_label), key, img))
        rows.append((composite_name(items, alpha_label), cells))
    return [(name, [(f, k, to_uint8(img).cpu().numpy()) for f, k, img in cells]) for name, cells in rows]

def _edit_batch(c, editor, prepared, batch, log):
    # batch = [(record, uint8 source, aligned or None)]: one reconstruction for the batch, one editing pass per changed code.
    _editor, directions, composites, mask = prepared
    inv = editor.invert(gse.to_tensor([src for _r, src, _a in batch], editor.device))
    rec_u8 = to_uint8(inv.img_rec).cpu().numpy()
    rows = _edit_rows(c, editor, directions, composites, inv)
    ws = inv.ws.cpu().numpy()
    identity = {s: e.cpu().tolist() for s, e in editor.identity_error(inv).items()}
    for i, (record, src, aligned) in enumerate(batch):
        if identity:
            record['aligner_identity_error'] = {s: _finite(e[i]) for s, e in identity.items()}
        mine = [(name, [(f, k, img[i]) for f, k, img in cells]) for name, cells in rows]
        try:
            record['outputs'] = _write_outputs(c, record['stem'], src, rec_u8[i], ws[i], mine, aligned, mask)
            record['status'] = 'ok'
        except OSError as err:
            record.update(status='failed', error=f'cannot write outputs ({err})')
            log(f'{record["name"]}: failed: {record["error"]}')

def prepare_edit(c, log=print):
    """(editor, directions, composites, paste mask): load the networks of config `c` and bind its directions (UserError on failure)."""
    torch.manual_seed(c.seed)
    editor = gse.load_editor(c.network_pkl, encoder=c.encoder, device=c.device, alpha0_shortcut=c.get('alpha0_shortcut', False),
        stages=c.get('stages'), gate_scale=c.get('gate_scale'), force=c.force)
    if c.get('align') and editor.G.img_channels != 3:
        raise UserError(f'--align: face alignment needs an RGB network; this one makes {editor.G.img_channels}-channel images')
    directions = resolve_directions(c, editor.G)
    composites = resolve_composites(c, editor.G, directions)
    for d in directions + [d for _items, bound in composites for d in bound if d not in directions]:
        if not d.matches(editor.G):
            log(f'warning: direction {d.group}/{d.name} was made for another generator ({d.generator or "unbound"}); used because of --force')
    mask = _read_mask(c.mask) if c.get('mask') else None
    return editor, directions, composites, mask

def _read_mask(path):
    try:
        return read_image(path, None, channels=1)[0][..., 0]
    except SkipImage as err:
        raise UserError(f'--mask: {path}: {err}')

def _read_input(c, entry, editor, finder, log):
    """(uint8 source [R, R, C], (photo, AlignedFace) or None, notes): the network input of one file (SkipImage on failure)."""
    if not c.get('align'):
        src, notes = gse.read_image(entry, editor.resolution, channels=editor.G.img_channels)
        aligned = None
    else:
        photo, face, notes = align_file(entry, editor.resolution, c.face_index, finder)
        src, aligned = face.crop, (photo, face)
    if notes:
        log(f'{entry.name}: {"; ".join(notes)}')
    return src, aligned, notes

def run_edit(c, prepared=None, log=print, progress=None):
    """Edit every input of config `c` (from setup_edit_config); returns the summary dict (also written to edits.json).

    `prepared` is the result of prepare_edit() (loaded here when None); `progress(n)` is called
    after each input (the CLI advances its progress bar with it).
    """
    prepared = prepared if prepared is not None else prepare_edit(c, log)
    editor = prepared[0]
    entries, ignored = gse.list_images(c.input)
    if ignored:
        log(f'--input: ignored {len(ignored)} file{"s" if len(ignored) > 1 else ""} that are not images: {", ".join(ignored[:5])}'
            f'{" ..." if len(ignored) > 5 else ""}')
    os.makedirs(c.outdir, exist_ok=True)
    finder = FaceFinder('--align') if c.get('align') else None
    records, pending = [], []
    try:
        for entry in entries:
            record = dict(name=entry.name, stem=entry.stem, status='pending', notes=[])
            records.append(record)
            try:
                src, aligned, record['notes'] = _read_input(c, entry, editor, finder, log)
                if aligned is not None:
                    record['align'] = aligned[1].to_dict()
                pending.append((record, src, aligned))
            except SkipImage as err:
                record.update(status='failed', error=str(err))
                log(f'{entry.name}: skipped: {err}')
                _advance(progress)
            if len(pending) == c.batch or (entry is entries[-1] and pending):
                _edit_batch(c, editor, prepared, pending, log)
                for _ in pending:
                    _advance(progress)
                pending = []
    finally:
        if finder is not None:
            finder.close()
    summary = _summary(c, editor, prepared, records)
    write_json(os.path.join(c.outdir, SUMMARY_NAME), summary)
    return summary

def _advance(progress):
    if progress is not None:
        progress(1)

def _summary(c, editor, prepared, records):
    _editor, directions, composites, _mask = prepared
    dirs = [dict(name=d.name, group=d.group, kind=d.kind, space=d.space, layers=list(d.layers), alphas=direction_alphas(c, d),
        source=d.source, generator=d.generator, fingerprint=d.fingerprint, matches_network=d.matches(editor.G)) for d in directions]
    failed = [r for r in records if r['status'] != 'ok']
    return dict(format='gradstyle-edit/1', network=c.network_pkl, encoder=c.encoder, mode=editor.mode, resolution=editor.resolution,
        noise_mode=gse.NOISE_MODE, seed=c.seed, alpha0_shortcut=editor.alpha0_shortcut, aligner_identity_error=_identity_summary(records),
        directions=dirs, composite_edits=[_composite_summary(items, bound) for items, bound in composites],
        knobs=dict(stages=editor.knobs.get('stages'), gate_scale=editor.knobs.get('gate_scale')),
        align=_align_summary(c), num_inputs=len(records), num_ok=len(records) - len(failed), num_failed=len(failed), inputs=records)

def _composite_summary(items, bound):
    return dict(label=composite_name(items, alpha_label), rule='W+ + sum of each direction\'s offset',
        edits=[dict(name=d.name, group=d.group, kind=d.kind, alphas=i['alphas']) for i, d in zip(items, bound)])

def _align_summary(c):
    if not c.get('align'):
        return None
    return dict(recipe='FFHQ quad from eye centres and mouth corners; landmarks: MediaPipe 0.10.14 Face Mesh (ours)',
        face_index=c.face_index, paste_back=c.paste_back, mask=c.mask, feather=c.feather,
        feather_definition='paste mask fades to 0 over this fraction of the crop side (ours)' if c.paste_back else None)

def _finite(value):
    return None if value != value else float(value)     # NaN (F = 0, an untrained GRM) -> null

def _identity_summary(records):
    # Mean over the inputs of |F' - F|_1 / |F|_1 per stage (None in e4e mode or where F = 0).
    per_input = [r['aligner_identity_error'] for r in records if r.get('aligner_identity_error')]
    if not per_input:
        return None
    stages = list(per_input[0])
    mean = {s: (float(np.mean(v)) if (v := [r[s] for r in per_input if r[s] is not None]) else None) for s in stages}
    return dict(definition="|F' - F|_1 / |F|_1 per stage: the Aligner on the unwarped residuals at alpha 0 (0 = identity kept)",
        mean=mean)

#----------------------------------------------------------------------------
# Click shell.

class EditUsageError(click.ClickException):
    """A UserError printed as `Error: <one line>` with exit status 2."""
    exit_code = 2

def _run(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except UserError as err:
        raise EditUsageError(str(err).splitlines()[0] if str(err) else type(err).__name__)

@click.command()
@click.option('--network', 'network_pkl', help='GradStyle snapshot, or a generator (any format) used with --encoder; "demo" = the bundled Fashion-MNIST network and its directions', required=True, metavar='PATH')
@click.option('--encoder',          help='e4e checkpoint (.pt) or pickle with an encoder; required for a plain generator', metavar='PATH')
@click.option('--input', 'input_',  help='Image file, folder (recursive) or zip', required=True, metavar='PATH')
@click.option('--direction', 'directions', help='Registered direction NAME or GROUP/NAME (repeatable)', multiple=True, metavar='NAME')
@click.option('--direction-file', 'direction_files', help='Direction file (.pt/.npy), bound to --network on the fly (repeatable)', multiple=True, metavar='FILE')
@click.option('--alpha',            help='Strength: one value, a list -1,0,1 or a sweep START:STOP:COUNT  [default: each direction\'s own]', metavar='ALPHAS')
@click.option('--outdir',           help='Where to write the results', required=True, metavar='DIR')
@click.option('--batch',            help='Images per forward pass', type=click.IntRange(min=1), default=4, show_default=True, metavar='INT')
@click.option('--device',           help='Torch device  [default: cuda if available, else cpu]', metavar='DEV')
@click.option('--seed',             help='Seed of torch\'s RNG (the networks run with const noise)', type=int, default=0, show_default=True, metavar='INT')
@click.option('--registry', 'registries', help='Extra direction registry folder to search first (repeatable)', multiple=True, metavar='DIR')
@click.option('--force',            help='Use directions and an --encoder made for another generator (skip the fingerprint and pairing checks)', is_flag=True)
@click.option('--alpha0-shortcut',  help='Where an edit leaves the codes unchanged (alpha 0), output the reconstruction instead of running the editing stream  [default: off, so sweeps are continuous]', is_flag=True)
@click.option('--edit', 'edits',     help='Composite edit: several directions in one pass, NAME:ALPHA,NAME:ALPHA; one may sweep NAME:START:STOP:COUNT (repeatable)', multiple=True, metavar='EDITS')
@click.option('--stages',           help='Only these GradStyle stages inject, e.g. b16,b32 (a single low or high stage is the paper\'s Fig. 8 ablation)  [default: all]', metavar='LIST')
@click.option('--gate-scale',       help='Scale the gate at these stages, e.g. b64=0.5: 0 = the plain generator there, 1 = as trained (ours: a continuous fidelity/editability dial)', metavar='LIST')
@click.option('--align', 'align_faces', help='FFHQ-align each photo first (offline face landmarks; needs pip install -e ".[align]")', is_flag=True)
@click.option('--face-index',       help='With --align: which face when a photo has several, by size (0 = the largest)', type=int, default=0, show_default=True, metavar='INT')
@click.option('--paste-back',       help='With --align: also write every output un-aligned into the photo, <name>_pasted.png at the photo\'s size', is_flag=True)
@click.option('--mask',             help='With --paste-back: paste mask in crop space (white = paste; any size, resized to the crop)  [default: the whole crop, edges feathered over 10% (ours)]', metavar='FILE')
@click.option('--dry-run', '-n',    help='Print the resolved options as JSON and exit', is_flag=True)
def main(network_pkl, encoder, input_, directions, direction_files, alpha, outdir, batch, device, seed, registries, force, alpha0_shortcut,
         edits, stages, gate_scale, align_faces, face_index, paste_back, mask, dry_run):
    """Invert images and edit them along directions, with GradStyle or with e4e alone.

    \b
    Examples:

    \b
    # A GradStyle snapshot, two registered directions, a sweep of 7 strengths:
    gradstyle-edit --network network-snapshot-000100.pkl --input photos/ --direction smile --direction age --alpha=-3:3:7 --outdir out
    \b
    # e4e only (plain generator + encoder), a direction file imported on the fly:
    gradstyle-edit --network ffhq.pkl --encoder e4e_ffhq_encode.pt --input me.jpg --direction-file pose.pt --alpha 3 --outdir out
    \b
    # A photo in the wild: align the face, smile and turn at once, put the result back into the photo:
    gradstyle-edit --network snapshot.pkl --input me.jpg --align --paste-back --edit smile:2,pose:-1.5 --outdir out
    \b
    Writes <outdir>/<image>/{reconstruction.png, <direction>_<alpha>.png, <d1>_<a1>+<d2>_<a2>.png, grid.png, ws.npy}
    (with --paste-back also <name>_pasted.png for each of them) and <outdir>/edits.json.
    Exit status: 0 all edited, 1 some inputs skipped, 2 usage error.
    """
    c = _run(setup_edit_config, network_pkl, encoder, input_, directions, direction_files, alpha, outdir, batch, device, seed, registries, force,
        alpha0_shortcut, edits, stages, gate_scale, align_faces, face_index, paste_back, mask)
    if dry_run:
        click.echo(json.dumps(c, indent=2))
        return
    prepared = _run(prepare_edit, c, log=click.echo)
    with click.progressbar(length=len(c.inputs), label=f'Editing {_plural(len(c.inputs), "image")}') as bar:
        summary = _run(run_edit, c, prepared, log=click.echo, progress=bar.update)
    composites = f', {_plural(len(c.edits), "composite edit")}' if c.edits else ''
    click.echo(f'{summary["num_ok"]} of {_plural(summary["num_inputs"], "image")} edited ({_plural(len(summary["directions"]), "direction")}'
        f'{composites}, {summary["mode"]} mode) -> {c.outdir}; summary in {SUMMARY_NAME}')
    if summary['aligner_identity_error']:
        errors = ', '.join(f'{s} {"n/a" if v is None else f"{v:.3f}"}' for s, v in summary['aligner_identity_error']['mean'].items())
        click.echo(f"Aligner identity error at alpha 0, |F' - F| / |F| (0 = identity kept): {errors}")
    if summary['num_failed']:
        names = [r['name'] for r in summary['inputs'] if r['status'] != 'ok']
        click.echo(f'{summary["num_failed"]} skipped: {", ".join(names[:5])}{" ..." if len(names) > 5 else ""}', err=True)
        raise SystemExit(1)

def _plural(n, word):
    return f'{n} {word}{"s" if n != 1 else ""}'

#----------------------------------------------------------------------------

if __name__ == '__main__':
    main()

#----------------------------------------------------------------------------
