"""`gradstyle-demo`: invert and edit real images with the bundled Fashion-MNIST GradStyle network.

The demo is gradstyle-eval's protocol (paper Sec. 4.2-4.3: reconstruction, then editing along
InterfaceGAN directions) run with the two methods the paper compares first, e4e-only (the encoder's
W+, no residual stream) and GradStyle (both streams), on the bundled held-out real test images or
on --input, with the bundled classifier scoring the edits and giving the ID features. It writes:

    <outdir>/comparison.png   rows: images; columns: source | e4e | GradStyle | GradStyle edits at -a and +a
                              of every direction (pixels enlarged x3, labelled)
    <outdir>/summary.json     the comparison's figures and the acceptance checks (format gradstyle-demo-summary/1)
    <outdir>/report.md        the same as tables, beside the figures the bundle was built with
    <outdir>/eval/            gradstyle-eval's full output: report.json/.md, samples/<method>.png (the alpha sweeps),
                              distortion_vs_editability.png

Shape letters: N images, K columns, R resolution, C channels.

Example:
    >>> from gradstyle_plugin.demo.run import setup_demo_config, run_demo
    >>> summary = run_demo(setup_demo_config('gradstyle_demo'))          # the bundled images
    >>> summary['reconstruction']['l2_gain'], [c['passed'] for c in summary['checks']]
"""

import json
import os

from stylegan2_ada_pytorch import dnnlib
from stylegan2_ada_pytorch.dnnlib import UserError
from stylegan2_ada_pytorch.images import list_images, save_image
from gradstyle_plugin.demo import figure
from gradstyle_plugin.demo.bundle import load_bundle
from gradstyle_plugin.eval import run as eval_run
from gradstyle_plugin.eval.config import setup_eval_config
from gradstyle_plugin.eval.evaluate import run_eval
from gradstyle_plugin.eval.metrics import finite_mean

FORMAT          = 'gradstyle-demo-summary/1'
DEMO_METHODS    = ('e4e', 'gradstyle')
MAX_ROWS        = 16        # Images shown in comparison.png (ours).
# Acceptance thresholds of the demo (issue 12; ours): relative reconstruction gain of GradStyle over e4e-only
# on L2 and on 1 - SSIM, and the fraction of edits that move the classifier's attribute as intended.
MIN_GAIN        = 0.2
MIN_INTENDED    = 0.8
SUMMARY_JSON, REPORT_MD, COMPARISON_PNG = 'summary.json', 'report.md', 'comparison.png'
COMMITTED_ROLE  = 'demo_summary'    # the bundle's own summary.json of its bundled images (written by the build)

#----------------------------------------------------------------------------
# Config.

def demo_directions(bundle):
    """The bundle's InterfaceGAN direction names (the ones the classifier scores), in build order."""
    names = ((bundle.provenance.get('steps') or {}).get('directions') or {}).get('interfacegan')
    if not names:
        raise UserError(f'--bundle {bundle.root}: its MANIFEST.json provenance names no InterfaceGAN directions')
    return list(names)

def setup_demo_config(outdir='gradstyle_demo', input=None, bundle=None, device='cpu', alpha=None, max_images=None, batch=8):
    """Validated demo options (EasyDict, plain data; --dry-run prints it). UserError naming the flag on bad input.

    `bundle` None = the bundle installed with the package (its files' sha256 are checked here).
    """
    if not outdir:
        raise UserError('--outdir: required')
    if input is not None:
        if not os.path.exists(input):
            raise UserError(f'--input: no such file or folder: {input}')
        entries, ignored = list_images(input, flag='--input')
        if not entries:
            raise UserError(f'--input: no images in {input} (ignored: {", ".join(ignored[:5]) or "nothing"})')
    b = load_bundle(bundle, flag='--bundle')
    outdir = os.path.abspath(outdir)
    ev = setup_eval_config(b.path('network'), input if input is not None else b.path('images'), outdir=os.path.join(outdir, 'eval'),
        methods=DEMO_METHODS, directions=demo_directions(b), registries=[b.path('directions')], alpha=alpha, batch=batch,
        device=device, max_images=max_images, classifier=b.path('classifier'), grid_images=MAX_ROWS)
    return dnnlib.EasyDict(outdir=outdir, bundle=b.root, input=None if input is None else os.path.abspath(input),
        bundled_images=input is None, eval=ev)

#----------------------------------------------------------------------------
# Figures of the comparison.

def _gain(e4e, gs):
    return None if e4e is None or gs is None or e4e == 0 else 1.0 - gs / e4e

def _check(name, value, threshold, op='>='):
    passed = None if value is None else bool(value >= threshold if op == '>=' else value > threshold)
    return dict(name=name, value=value, threshold=threshold, op=op, passed=passed)

def summarise(report):
    """summary.json's figures from a gradstyle-eval report of the demo methods (pure)."""
    methods = {m: report['methods'][m] for m in DEMO_METHODS}
    rec = {m: dict(l2=v['table1']['l2'], one_minus_ssim=None if v['table1']['ssim'] is None else 1.0 - v['table1']['ssim'],
        psnr=v['table1']['psnr'], ms_per_image=v['cost']['ms_per_image']) for m, v in methods.items()}
    rec['l2_gain'] = _gain(rec['e4e']['l2'], rec['gradstyle']['l2'])
    rec['one_minus_ssim_gain'] = _gain(rec['e4e']['one_minus_ssim'], rec['gradstyle']['one_minus_ssim'])
    edits, checks = {}, [_check('L2: relative gain of GradStyle over e4e-only', rec['l2_gain'], MIN_GAIN),
        _check('1 - SSIM: relative gain of GradStyle over e4e-only', rec['one_minus_ssim_gain'], MIN_GAIN)]
    for d in report['protocol']['directions']:
        name = d['name']
        cell = {m: dict(intended=v['edits'][name]['attr_intended'], intended_both=v['edits'][name].get('attr_intended_both'), id=finite_mean([v['edits'][name]['id_plus'], v['edits'][name]['id_minus']]),
            id_plus=v['edits'][name]['id_plus'], id_minus=v['edits'][name]['id_minus']) for m, v in methods.items()}
        edits[name] = dict(cell, alphas=d['alphas'])
        checks.append(_check(f'{name}: GradStyle edits that move the attribute as intended', cell['gradstyle']['intended'], MIN_INTENDED))
        checks.append(_check(f'{name}: GradStyle edit ID above e4e\'s', None if None in (cell['gradstyle']['id'], cell['e4e']['id'])
            else cell['gradstyle']['id'] - cell['e4e']['id'], 0.0, op='>'))
    p = report['protocol']
    return dict(format=FORMAT, images=p['images'], num_images=p['num_images'], network_sha256=p['network']['sha256'],
        reconstruction=rec, edits=edits, checks=checks)

#----------------------------------------------------------------------------
# The run.

def run_demo(c, log=print, progress=None, start=None):
    """Run the demo of config `c` (setup_demo_config): writes the files above and returns summary.json's dict."""
    os.makedirs(c.eval.outdir, exist_ok=True)
    report = run_eval(c.eval, log=log, progress=progress, start=start)
    summary = summarise(report)
    grids = {m: eval_run.saved_grid(c.eval, m) for m in DEMO_METHODS}
    save_image(os.path.join(c.outdir, COMPARISON_PNG), figure.comparison(grids, report['protocol']['directions']))
    summary['files'] = dict(comparison=COMPARISON_PNG, eval_report='eval/report.md',
        sweeps={m: os.path.join('eval', report['methods'][m]['grid']['file']) for m in DEMO_METHODS if report['methods'][m].get('grid')})
    with dnnlib.util.atomic_write(os.path.join(c.outdir, SUMMARY_JSON), 'w') as f:
        f.write(json.dumps(summary, indent=2) + '\n')
    bundle = load_bundle(c.bundle, flag='--bundle')
    committed = _committed(bundle) if c.bundled_images else None
    build_report = _read_json(bundle.path('report'))
    with dnnlib.util.atomic_write(os.path.join(c.outdir, REPORT_MD), 'w') as f:
        f.write(figure.markdown(summary, committed, build_report, bundle.provenance))
    return summary

def _read_json(path):
    with open(path, encoding='utf-8') as f:
        return json.load(f)

def _committed(bundle):
    return _read_json(bundle.path(COMMITTED_ROLE)) if COMMITTED_ROLE in bundle.roles else None

#----------------------------------------------------------------------------
