"""Options of `gradstyle-eval` / `gradstyle_plugin.evaluate()`: `setup_eval_config()` is pure (no network
is loaded), checks every file and value, and returns plain data (printed by --dry-run, recorded in
report.json). Values the paper does not give are marked 'ours' in OURS (and in --help).
"""

import os

from stylegan2_ada_pytorch import dnnlib
from stylegan2_ada_pytorch.dnnlib import UserError
from stylegan2_ada_pytorch.images import list_images
from gradstyle_plugin.eval.methods import METHODS, PROJECT_LR, PROJECT_STEPS

SWEEP_COUNT     = 5         # Default alphas per direction: 5 values from -a to a, a = its default strength (ours).
GRID_IMAGES     = 4         # Images per sample grid (ours).
ALPHA_ID_FLOOR  = 0.5       # --record-alpha-range: edit ID at least this (ours).

OURS = dict(
    alphas=f'{SWEEP_COUNT} values from -a to a, a = the direction\'s default strength (ours)',
    attr_change='classifier log-odds of the direction\'s attribute class (exact: its logit minus the logsumexp of the others): edit minus the method\'s own '
        'alpha-0 edit (the same edit path with no step, so neither reconstruction error nor what the path changes at alpha 0 counts as editing; '
        'that change is reported as "alpha-0 offset") (ours)',
    attr_intended='fraction of edits with sign(alpha) * change > 0, each image scored on the side it can move to: its -alpha edits when the source\'s '
        'log-odds are > 0 (it has the attribute), else its +alpha edits; "intended both" scores every image on both signs (ours)',
    edit_id='ID cosine between the source image and the edit (paper Table 2)',
    smoothness='max / mean of the RMS pixel steps between neighbouring alphas of a sweep (1 = even steps; ours)',
    lec='e4e\'s latent editing consistency |w - E(G(E(G(w + dw)) - dw))|_2 over all W+ entries, the method\'s own G (ours: norm)',
    alpha_range=f'widest sweep interval around 0 whose mean edit ID stays >= the floor ({ALPHA_ID_FLOOR} by default; ours)',
    project=f'{PROJECT_STEPS} Adam steps, lr {PROJECT_LR}, from the encoder W+ (ours)',
    grid_images=f'{GRID_IMAGES} (ours)',
)

#----------------------------------------------------------------------------

def _need_file(path, flag, folder_ok=False, special=()):
    if path is None or path in special:
        return path
    if not (os.path.isfile(path) or (folder_ok and os.path.isdir(path))):
        raise UserError(f'{flag}: no such file{" or folder" if folder_ok else ""}: {path}')
    return os.path.abspath(path)

def _method_names(methods):
    names = [n.strip() for item in (methods or ()) for n in str(item).split(',') if n.strip()]
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        raise UserError(f'--methods: unknown method {unknown[0]!r} (choose from {", ".join(METHODS)})')
    if len(set(names)) != len(names):
        raise UserError(f'--methods: a method is given twice ({",".join(names)})')
    return names

def setup_eval_config(network_pkl, data, outdir=None, encoder=None, methods=(), directions=(), registries=(), alpha=None,
                      batch=8, device=None, seed=0, max_images=None, lpips_weights=None, lpips_net='auto', id_weights=None, id_domain='auto',
                      classifier=None, inception_weights=None, project_steps=PROJECT_STEPS, project_lr=PROJECT_LR,
                      grid_images=GRID_IMAGES, resume=False, record_alpha_range=False, alpha_id_floor=ALPHA_ID_FLOOR, force=False):
    """Validated options as an EasyDict (JSON-serialisable). UserError naming the flag on bad input."""
    from gradstyle_plugin.cli.edit import parse_alphas
    from gradstyle_plugin.demo.bundle import resolve_demo
    if network_pkl is None:
        raise UserError('--network: required')
    network_pkl, registries = resolve_demo(network_pkl, registries)
    _need_file(network_pkl, '--network')
    if data is None:
        raise UserError('--data: required (a folder, zip or image file)')
    entries, ignored = list_images(_need_file(data, '--data', folder_ok=True), flag='--data')
    if not entries:
        raise UserError(f'--data: no images in {data} (ignored: {", ".join(ignored[:5]) or "nothing"})')
    for value, flag, low in [(batch, '--batch', 1), (max_images, '--max-images', 1), (project_steps, '--project-steps', 0),
                             (grid_images, '--grid-images', 0)]:
        if value is not None and int(value) < low:
            raise UserError(f'{flag}: must be at least {low}, got {value}')
    if lpips_net not in ('auto', 'vgg', 'alex'):
        raise UserError(f'--lpips-net: one of auto, vgg, alex; got {lpips_net!r}')
    if id_domain not in ('auto', 'face', 'moco'):
        raise UserError(f'--id-domain: one of auto, face, moco; got {id_domain!r}')
    if record_alpha_range and not directions:
        raise UserError('--record-alpha-range: needs --direction (registered directions whose range is measured)')
    if record_alpha_range and id_weights is None and classifier is None:
        raise UserError('--record-alpha-range: the range is measured with the edit ID; give --id-weights or --classifier')
    return dnnlib.EasyDict(network_pkl=os.path.abspath(network_pkl), data=os.path.abspath(data), outdir=None if outdir is None else os.path.abspath(outdir),
        encoder=_need_file(encoder, '--encoder'), methods=_method_names(methods), directions=list(directions),
        registries=[os.path.abspath(os.path.expanduser(r)) for r in registries], alphas=None if alpha is None else parse_alphas(alpha),
        batch=int(batch), device=device or 'cpu', seed=int(seed), max_images=None if max_images is None else int(max_images),
        lpips_weights=_need_file(lpips_weights, '--lpips-weights', special=('random',)), lpips_net=lpips_net, id_weights=_need_file(id_weights, '--id-weights'),
        id_domain=id_domain, classifier=_need_file(classifier, '--classifier'), inception_weights=_need_file(inception_weights, '--inception-weights'),
        project_steps=int(project_steps), project_lr=float(project_lr), grid_images=int(grid_images), resume=bool(resume),
        record_alpha_range=bool(record_alpha_range), alpha_id_floor=float(alpha_id_floor), force=bool(force),
        num_listed=len(entries), ignored=ignored)

#----------------------------------------------------------------------------
