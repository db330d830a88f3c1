"""`evaluate()`: the whole evaluation of `gradstyle-eval` as one Python call, returning report.json's dict.

    >>> from gradstyle_plugin import evaluate
    >>> report = evaluate('network-snapshot-000100.pkl', 'celeba_hq_test/', outdir='eval', max_images=1000,
    ...     directions=['pose', 'smile'], lpips_weights='vgg16.pth', id_weights='model_ir_se50.pth')
    >>> report['methods']['gradstyle']['table1']['psnr'], report['methods']['e4e']['edits']['smile']['id_plus']

report.json = {'format': 'gradstyle-eval/1', 'protocol': {...}, 'methods': {name: {table1, edits,
gam_identity_error, cost, unscored, grid, ...}}, 'plot': file or None, 'alpha_ranges': {...}}.
"""

import datetime
import importlib.metadata
import json
import os
import platform

import numpy as np
import torch

import editing_directions as ed
from stylegan2_ada_pytorch import dnnlib
from stylegan2_ada_pytorch.dnnlib import UserError
from gradstyle_plugin import edit as gse
from gradstyle_plugin.eval import metrics, report as rp
from gradstyle_plugin.eval import run
from gradstyle_plugin.eval.config import OURS, setup_eval_config
from gradstyle_plugin.eval.methods import SPECS, parse_methods
from gradstyle_plugin.eval.scoring import Scorer, fid_kid

FORMAT = 'gradstyle-eval/1'
REPORT_JSON, REPORT_MD, PLOT_PNG = 'report.json', 'report.md', 'distortion_vs_editability.png'

#----------------------------------------------------------------------------

def _versions():
    out = dict(python=platform.python_version(), torch=torch.__version__)
    for pkg in ['gradstyle', 'torchmetrics', 'lpips', 'numpy', 'matplotlib']:
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = None
    return out

def protocol(c, editor, entries, inputs, directions, alphas, scorer, methods):
    """The protocol block of report.json: everything needed to reproduce and compare the numbers."""
    return dict(network=dict(file=c.network_pkl, sha256=dnnlib.util.file_sha256(c.network_pkl), mode=editor.mode),
        encoder=dict(file=c.encoder, sha256=dnnlib.util.file_sha256(c.encoder)) if c.encoder else None,
        resolution=editor.resolution, channels=int(editor.G.img_channels), noise_mode=gse.NOISE_MODE,
        data=c.data, images=[e.name for e in entries], num_images=len(entries), num_listed=c.num_listed,
        max_images=c.max_images, skipped=inputs[0], converted=inputs[1], ignored_files=c.ignored, metrics=dict(metrics.protocol_record(), **scorer.record),
        directions=[dict(name=d.name, group=d.group, kind=d.kind, space=d.space, layers=list(d.layers), default_alpha=d.default_alpha,
            fingerprint=d.fingerprint, matches_network=d.matches(editor.G), alphas=alphas[d.name]) for d in directions],
        methods=methods, method_definitions={m: SPECS[m].text for m in methods}, seed=c.seed, batch=c.batch, device=c.device,
        ours=OURS, versions=_versions())

def _setup(c, log):
    torch.manual_seed(c.seed)
    editor = gse.load_editor(c.network_pkl, encoder=c.encoder, device=c.device, force=c.force)
    methods = parse_methods(c.methods, editor.mode == 'gradstyle')
    entries, skipped, converted = run.read_inputs(c, editor.resolution, editor.G.img_channels)
    for s in skipped:
        log(f'{s["image"]}: skipped: {s["reason"]}')
    if not entries:
        raise UserError(f'--data: none of the {len(skipped)} images of {c.data} could be read')
    directions = run.resolve_directions(c, editor.G)
    alphas = {d.name: run.sweep(c, d) for d in directions}
    scorer = Scorer(c, editor.G.img_channels, editor.device)
    if scorer.lpips_net is None:
        log('warning: no --lpips-weights: LPIPS is not reported (and project optimises MSE only)')
    if scorer.id_source is None:
        log('warning: neither --id-weights nor --classifier: ID and edit ID are not reported')
    return editor, methods, entries, (skipped, converted), directions, alphas, scorer

def run_eval(c, log=print, progress=None, start=None):
    """Run the evaluation of config `c` (setup_eval_config); writes the report files when c.outdir is set; returns the dict.

    `progress(n)` is called after each batch of each method; `start(total)` once with the number of steps.
    """
    editor, methods, entries, inputs, directions, alphas, scorer = _setup(c, log)
    proto = protocol(c, editor, entries, inputs, directions, alphas, scorer, methods)
    fp = run.fingerprint(c, {k: v for k, v in proto.items() if k not in ('versions', 'methods', 'method_definitions')})
    states = {m: (run.load_state(c, m, fp) if c.outdir else None) for m in methods}
    todo = [m for m in methods if states[m] is None]
    partial = {m: run.load_state(c, m, fp, tag='.partial') if c.outdir else None for m in todo}
    if start is not None:
        start(sum(len(entries) - len(partial[m]['images'] if partial[m] else []) for m in todo))
    if c.resume and len(todo) < len(methods):
        log(f'--resume: {len(methods) - len(todo)} of {len(methods)} methods already done ({", ".join(m for m in methods if m not in todo)})')
    for m in [m for m in todo if partial[m]]:
        log(f'--resume: {m} continues after {len(partial[m]["images"])} of {len(entries)} images')
    nets = (editor.G, editor.encoder, editor.device)
    for m in todo:
        checkpoint = (lambda st, m=m: run.save_state(c, m, fp, st, tag='.partial')) if c.outdir else None
        result, feats, real, grid = run.run_method(c, m, nets, scorer, entries, directions, alphas, progress, partial[m], checkpoint)
        states[m] = dict(result, features=feats, real=real, grid=grid)
        if c.outdir:
            run.save_state(c, m, fp, states[m])
    return _finish(c, proto, methods, states, directions, alphas, scorer, log)

def _finish(c, proto, methods, states, directions, alphas, scorer, log):
    active = rp.active_metrics(scorer, proto['resolution'])
    dir_active = {d.name: (['id'] if scorer.id_source else []) + ['lec'] + (['attr'] if scorer.classifier and scorer.classifier.has_attribute(d.name) else [])
        for d in directions}
    report = dict(format=FORMAT, created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'), protocol=proto, methods={})
    for m in methods:
        st = states[m]
        st['grid'] = run.write_grid(c, m, st['grid'], directions, alphas)
        fid = fid_kid(st['real'], st['features'], pixel=scorer.inception is None)
        report['methods'][m] = rp.summarise_method(st, fid, active, directions, alphas, dir_active)
    report['plot'] = rp.write_plot(os.path.join(c.outdir, PLOT_PNG), report) if c.outdir else None
    report['alpha_ranges'] = _alpha_ranges(c, report, directions, log)
    if c.outdir:
        with dnnlib.util.atomic_write(os.path.join(c.outdir, REPORT_JSON), 'w') as f:
            f.write(json.dumps(report, indent=2, default=_json_default) + '\n')
        with dnnlib.util.atomic_write(os.path.join(c.outdir, REPORT_MD), 'w') as f:
            f.write(rp.markdown(report))
    return json.loads(json.dumps(report, default=_json_default))

def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, set):
        return sorted(value)
    raise TypeError(f'not JSON serialisable: {type(value).__name__}')

def _alpha_ranges(c, report, directions, log):
    # Measured on the full method when present (else the first evaluated); recorded in the registry with --record-alpha-range.
    methods = report['methods']
    if not directions or not methods:
        return None
    ref = 'gradstyle' if 'gradstyle' in methods else next(iter(methods))
    out = dict(method=ref, floor=c.alpha_id_floor, definition=OURS['alpha_range'], ranges={})
    for d in directions:
        rng = rp.alpha_range(methods[ref]['edits'][d.name], c.alpha_id_floor)
        out['ranges'][d.name] = rng
        if c.record_alpha_range:
            info = dict(useful_alpha_range=rng, alpha_range_method=ref, alpha_range_id_floor=c.alpha_id_floor,
                alpha_range_network=os.path.basename(c.network_pkl), alpha_range_images=report['protocol']['num_images'])
            path = ed.update_direction_info(d, info, ed.default_registry_dirs(c.registries))
            log(f'{d.name}: useful alpha range {rng} recorded in {path}')
    return out

#----------------------------------------------------------------------------

def evaluate(network, data, outdir=None, log=print, **options):
    """Evaluate a snapshot on a folder / zip of images; returns report.json's dict (files written when `outdir` is given).

    `options` are setup_eval_config()'s: methods, directions, registries, alpha, batch, device, seed, max_images,
    lpips_weights, lpips_net, id_weights, id_domain, classifier, inception_weights, project_steps, project_lr, grid_images,
    resume, record_alpha_range, alpha_id_floor, encoder, force.
    """
    c = setup_eval_config(network, data, outdir=outdir, **options)
    if c.outdir:
        os.makedirs(c.outdir, exist_ok=True)
    return run_eval(c, log=log)

#----------------------------------------------------------------------------
