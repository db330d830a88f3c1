"""The evaluation loop of `gradstyle-eval`: every method on the same images, batch by batch, each
method's per-image scores saved under <outdir>/state/ when it finishes (what --resume picks up).

Per image and method: Table 1 scores of the reconstruction, the GAM's identity error at alpha 0, and
per direction and alpha the edit ID (source vs edit), the attribute change (classifier; from the
method's own alpha-0 edit), e4e's LEC, plus per direction the sweep smoothness, the source's attribute
score and the alpha-0 offset. Timing covers the method's own work (inversion and edits),
not the scoring, after one untimed warm-up pass per method.

Shape letters: N batch, L num_ws, D w_dim, C channels, R resolution.
"""

import hashlib
import json
import os
import resource
import time

import numpy as np
import torch

import editing_directions as ed
from stylegan2_ada_pytorch import dnnlib
from stylegan2_ada_pytorch.dnnlib import UserError
from stylegan2_ada_pytorch.images import SkipImage, list_images, read_image, save_image, to_uint8
from gradstyle_plugin import edit as gse
from gradstyle_plugin.eval import metrics
from gradstyle_plugin.eval.config import SWEEP_COUNT
from gradstyle_plugin.eval.methods import Method
from gradstyle_plugin.eval.scoring import as_list

STATE_DIR = 'state'

#----------------------------------------------------------------------------
# Inputs.

def read_inputs(c, resolution, channels):
    """(readable entries, skipped [{'image', 'reason'}], converted [{'image', 'notes'}]) of --data, sorted, at most --max-images.

    `converted` names every image that was not used as stored (mode conversion, centre crop, resize; see images.read_image).
    """
    entries, _ignored = list_images(c.data, flag='--data')
    entries = entries[:c.max_images] if c.max_images else entries
    ok, skipped, converted = [], [], []
    for entry in entries:
        try:
            notes = read_image(entry, resolution, channels)[1]
            ok.append(entry)
            if notes:
                converted.append(dict(image=entry.name, notes=notes))
        except SkipImage as err:
            skipped.append(dict(image=entry.name, reason=str(err)))
    return ok, skipped, converted

def batches(entries, batch, resolution, channels):
    """Yield (names, uint8 [N, R, R, C]) batches (files re-read per method, so memory stays at one batch)."""
    for start in range(0, len(entries), batch):
        part = entries[start:start + batch]
        yield [e.name for e in part], np.stack([read_image(e, resolution, channels)[0] for e in part])

def resolve_directions(c, G):
    dirs = ed.default_registry_dirs(c.registries)
    found = []
    for name in c.directions:
        try:
            found.append(ed.resolve(name, G, dirs, force=c.force))
        except ed.DirectionError as err:
            raise UserError(f'--direction {name}: {err}')
    return found

def sweep(c, d):
    """The alphas of direction d: --alpha, or SWEEP_COUNT values from -a to a (a = its default strength)."""
    if c.alphas is not None:
        return list(c.alphas)
    a = abs(float(d.default_alpha))
    return [float(f'{v:.12g}') + 0.0 for v in np.linspace(-a, a, SWEEP_COUNT)]

#----------------------------------------------------------------------------
# One batch of one method.

def _lec(method, inv, ws_edit, img_edit):
    # e4e's LEC with the method's own renderer: w'' = E(G(E(G(w + dw)) - dw)); |w - w''|_2 over all W+ entries.
    offset = ws_edit - inv.ws
    w1 = method.encoder(img_edit)[0]
    w2 = method.encoder(method.render(inv, w1 - offset))[0]
    return (w2 - inv.ws).flatten(1).norm(dim=1)

def _smoothness(images):
    # max / mean of the RMS steps between neighbouring alphas (None with fewer than 3 alphas or no change).
    if len(images) < 3:
        return None
    steps = torch.stack([(b - a).square().mean([1, 2, 3]).sqrt() for a, b in zip(images[:-1], images[1:])])     # [K-1, N]
    return steps.max(0).values / steps.mean(0).clamp(min=1e-12)

def _attribute_references(scorer, name, src01, rec01, zero01, n):
    """{'zero': [N] tensor, the alpha-0 edit's attribute log-odds (None without a classifier for it); lists of N:
    'source': the sources' log-odds (the side of the attribute each image is on), 'offset': the alpha-0 edit's
    log-odds minus the reconstruction's (what the edit path changes with no edit)}."""
    s, r, z = (scorer.attribute_score(x, name) for x in (src01, rec01, zero01))
    return dict(zero=z, source=as_list(s, n), offset=as_list(z - r if z is not None else None, n))

def _alpha0_edit(method, inv, directions, alphas, edits):
    # The reference of the attribute change (config.OURS['attr_change']): taken from the sweep when a direction that
    # adds alpha * d has alpha 0 there (GANSpace's alpha sets a coordinate, so its alpha 0 is a real edit), else rendered.
    for d in directions:
        if getattr(d, 'kind', None) != 'ganspace' and 0 in alphas[d.name]:
            return edits[d.name, alphas[d.name][alphas[d.name].index(0)]][1]
    return method.render(inv, inv.ws)

@torch.no_grad()
def score_batch(method, scorer, directions, alphas, names, u8):
    """(per-image records, seconds of method work, rec uint8 [N, R, R, C], edit cells {(d, alpha): uint8})."""
    img = gse.to_tensor(u8, next(method.G.parameters()).device)
    src = metrics.from_uint8(u8)
    t0 = time.perf_counter()
    inv = method.invert(img)
    edits = {}
    for d in directions:
        for a in alphas[d.name]:
            ws_edit = gse.Editor.shift(inv.ws, d, a)
            edits[d.name, a] = (ws_edit, method.render(inv, ws_edit))
    seconds = time.perf_counter() - t0
    src_embed = scorer.embed(src)
    rec01 = metrics.quantize(inv.img_rec.cpu())
    recs = scorer.reconstruction(src, rec01, src_embed)
    ident = {s: as_list(v, len(names)) for s, v in method.identity_error(inv).items()}
    zero01 = metrics.quantize(_alpha0_edit(method, inv, directions, alphas, edits).cpu()) if directions else None
    per_dir, smooth, attrs = {}, {}, {}
    for d in directions:
        cells, imgs, attrs[d.name] = {}, [], _attribute_references(scorer, d.name, src, rec01, zero01, len(names))
        for a in alphas[d.name]:
            ws_edit, img_edit = edits[d.name, a]
            e01 = metrics.quantize(img_edit.cpu())
            imgs.append(e01)
            emb = scorer.embed(e01)
            attr = scorer.attribute_score(e01, d.name)
            cells[a] = dict(id=as_list(metrics.cosine(emb, src_embed) if emb is not None else None, len(names)),
                attr=as_list(attr - attrs[d.name]['zero'] if attr is not None else None, len(names)),
                lec=as_list(_lec(method, inv, ws_edit, img_edit).cpu(), len(names)))
        per_dir[d.name] = cells
        smooth[d.name] = as_list(_smoothness(imgs), len(names))
    records = []
    for i, name in enumerate(names):
        records.append(dict(image=name, **{k: v[i] for k, v in recs.items()}, identity_error={s: v[i] for s, v in ident.items()},
            edits={dn: {str(a): {k: v[i] for k, v in cell.items()} for a, cell in cells.items()} for dn, cells in per_dir.items()},
            attr_source={dn: v['source'][i] for dn, v in attrs.items()}, attr_offset={dn: v['offset'][i] for dn, v in attrs.items()},
            smoothness={dn: v[i] for dn, v in smooth.items()}))
    cells_u8 = {key: to_uint8(img_e).cpu().numpy() for key, (_w, img_e) in edits.items()}
    return records, seconds, to_uint8(inv.img_rec).cpu().numpy(), cells_u8

#----------------------------------------------------------------------------
# One method over all images.

def _reset_peak_memory(device):
    # CUDA: the allocator's peak. CPU on Linux: writing 5 to /proc/self/clear_refs resets the process's VmHWM (peak RSS).
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
        return True
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return _proc_status_mb('VmRSS')
    except OSError:
        return False

def _proc_status_mb(key):
    with open('/proc/self/status') as f:
        value = next((line.split()[1] for line in f if line.startswith(key + ':')), None)
    return None if value is None else int(value) / 1024

def _peak_memory(device, was_reset):
    if device.type == 'cuda':
        return dict(peak_mb=torch.cuda.max_memory_allocated(device) / 2 ** 20, kind='torch.cuda.max_memory_allocated during the method')
    hwm = _proc_status_mb('VmHWM') if was_reset else None
    if hwm is not None:
        return dict(peak_mb=hwm, above_start_mb=hwm - was_reset, kind='peak RSS of the process during the method (Linux VmHWM, '
            'reset per method; includes the loaded networks and the scoring); above_start_mb: its rise over the RSS at the start')
    return dict(peak_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, kind='process peak RSS so far (CPU; not per method)')

@torch.no_grad()
def _warm_up(method, entry, directions, alphas):
    # One untimed pass on the first image, so one-time costs (extension builds, first-call allocations) do not land
    # on the method that happens to run first. Skipped for `project` (it would be a whole projection).
    if method.spec.optimise:
        return
    G = method.G
    img = gse.to_tensor([read_image(entry, G.img_resolution, G.img_channels)[0]], next(G.parameters()).device)
    inv = method.invert(img)
    for d in directions[:1]:
        method.render(inv, gse.Editor.shift(inv.ws, d, alphas[d.name][-1]))

def run_method(c, name, nets, scorer, entries, directions, alphas, progress=None, partial=None, checkpoint=None):
    """(result {'method', 'images', 'cost'}, FID features, source features, sample grid rows) of one method.

    `partial`: the state of an interrupted run of this method (its first images are not redone);
    `checkpoint(state)` is called after every batch with the state so far (what --resume continues from).
    """
    G, E, device = nets
    method = Method(name, G, E, lpips_net=scorer.lpips_net, project_steps=c.project_steps, project_lr=c.project_lr)
    torch.manual_seed(c.seed)
    _warm_up(method, entries[0], directions, alphas)
    was_reset = _reset_peak_memory(device)
    st = partial or dict(images=[], seconds=0.0, features=[], real=[], grid=[])
    st['features'], st['real'] = list(st['features']), list(st['real'])
    for names, u8 in batches(entries[len(st['images']):], c.batch, G.img_resolution, G.img_channels):
        recs, sec, rec_u8, cells = score_batch(method, scorer, directions, alphas, names, u8)
        st['images'] += recs
        st['seconds'] += sec
        st['features'] += list(scorer.fid_features(torch.from_numpy(rec_u8).permute(0, 3, 1, 2)))
        st['real'] += list(scorer.fid_features(torch.from_numpy(u8).permute(0, 3, 1, 2)))
        for i in range(min(len(names), c.grid_images - len(st['grid']))):
            st['grid'].append([u8[i], rec_u8[i]] + [cells[d.name, a][i] for d in directions for a in alphas[d.name]])
        if checkpoint is not None and len(st['images']) < len(entries):
            checkpoint(st)
        if progress is not None:
            progress(len(names))
    cost = dict(ms_per_image=1000 * st['seconds'] / max(len(st['images']), 1), seconds=st['seconds'], parameters=method.parameter_count(),
        device=str(device), **_peak_memory(device, was_reset))
    result = dict(method=method.record(), images=st['images'], cost=cost)
    return result, np.stack(st['features']), np.stack(st['real']), st['grid']

#----------------------------------------------------------------------------
# Resume state: <outdir>/state/<method>.json (+ .features/.real/.grid .npy) when a method is done, <method>.partial.*
# after each batch until then. The JSON is written last, so a state without its arrays never exists.

def fingerprint(c, protocol):
    """sha256 of everything that decides the numbers (the network, images, directions, alphas, metric files, options)."""
    keys = ['encoder', 'seed', 'lpips_weights', 'lpips_net', 'id_weights', 'id_domain', 'classifier', 'inception_weights', 'project_steps',
        'project_lr', 'grid_images', 'batch']
    data = dict({k: c[k] for k in keys}, protocol=protocol)
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()

def _state_path(c, name, tag, kind):
    return os.path.join(c.outdir, STATE_DIR, f'{name}{tag}.{kind}')

def load_state(c, name, fp, tag=''):
    """The saved state of a method (tag '' = done, '.partial' = interrupted), or None; UserError if it is another eval's."""
    path = _state_path(c, name, tag, 'json')
    if not (c.resume and os.path.isfile(path)):
        return None
    with open(path, encoding='utf-8') as f:
        state = json.load(f)
    if state.get('fingerprint') != fp:
        raise UserError(f'--resume: {path} was written by an eval with other inputs or options; use another --outdir or drop --resume')
    for kind in ['features', 'real', 'grid']:
        state[kind] = np.load(_state_path(c, name, tag, f'{kind}.npy'), allow_pickle=False)
    state['grid'] = [list(row) for row in state['grid']]
    return state

def saved_grid(c, name):
    """The sample-grid cells of a finished method, uint8 [rows, columns, R, R, C] (columns as write_grid names them)."""
    return np.load(_state_path(c, name, '', 'grid.npy'), allow_pickle=False)

def save_state(c, name, fp, state, tag=''):
    """Write a method's state: its arrays first, then the JSON (atomically each); a finished method drops its partial files."""
    os.makedirs(os.path.join(c.outdir, STATE_DIR), exist_ok=True)
    for kind in ['features', 'real', 'grid']:
        with dnnlib.util.atomic_write(_state_path(c, name, tag, f'{kind}.npy')) as f:
            np.save(f, np.asarray(state[kind]), allow_pickle=False)
    with dnnlib.util.atomic_write(_state_path(c, name, tag, 'json'), 'w') as f:
        json.dump(dict({k: v for k, v in state.items() if k not in ('features', 'real', 'grid')}, fingerprint=fp), f)
    if not tag:
        for kind in ['json', 'features.npy', 'real.npy', 'grid.npy']:
            if os.path.exists(_state_path(c, name, '.partial', kind)):
                os.remove(_state_path(c, name, '.partial', kind))

def write_grid(c, name, grid, directions, alphas):
    if not grid or c.outdir is None:
        return None
    from gradstyle_plugin.cli.edit import make_grid
    rel = os.path.join('samples', f'{name}.png')
    os.makedirs(os.path.join(c.outdir, 'samples'), exist_ok=True)
    save_image(os.path.join(c.outdir, rel), make_grid(grid))
    return dict(file=rel, columns=['source', 'reconstruction'] + [f'{d.name}@{a:g}' for d in directions for a in alphas[d.name]])

#----------------------------------------------------------------------------
