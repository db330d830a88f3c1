"""`gradstyle-eval`: every method on the same images under one recorded protocol (paper Tables 1-2, Fig. 8).

Writes <outdir>/report.json (protocol block + per-method tables), report.md (the tables in the
paper's layout), samples/<method>.png (rows: images; columns: source, reconstruction, the edits),
distortion_vs_editability.png, and state/ (per-method results, saved after every batch; --resume continues from them).
Every file is written under a temporary name and renamed. Exit status: 0 when every image was
read and scored, 1 when some were skipped or left unscored (named in the report and on stderr),
2 for usage errors.

The click command only parses; `setup_eval_config()` and `run_eval()` (gradstyle_plugin/eval) do the work.
"""

import functools
import json
import os

import click

from stylegan2_ada_pytorch.dnnlib import UserError
from gradstyle_plugin.cli._progress import run_with_bar
from gradstyle_plugin.eval.config import ALPHA_ID_FLOOR, GRID_IMAGES, SWEEP_COUNT, setup_eval_config
from gradstyle_plugin.eval.evaluate import REPORT_JSON, run_eval
from gradstyle_plugin.eval.methods import METHODS, PROJECT_LR, PROJECT_STEPS

#----------------------------------------------------------------------------

class EvalUsageError(click.ClickException):
    exit_code = 2

def _run(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except UserError as err:
        raise EvalUsageError(str(err).splitlines()[0] if str(err) else type(err).__name__)

@click.command()
@click.option('--network', 'network_pkl', help='GradStyle snapshot (or a plain generator with --encoder: e4e and project only); "demo" = the bundled Fashion-MNIST network and its directions', required=True, metavar='PATH')
@click.option('--data', '--input', 'data', help='Images: folder (recursive), zip or one file', required=True, metavar='PATH')
@click.option('--outdir',           help='Where to write report.json, report.md, samples/, the plot', required=True, metavar='DIR')
@click.option('--encoder',          help='Encoder replacing the snapshot\'s (e4e .pt or pickle with "encoder")', metavar='PATH')
@click.option('--methods', 'methods', help=f'Comma list (repeatable) from {",".join(METHODS)}  [default: all the network supports]', multiple=True, metavar='LIST')
@click.option('--direction', 'directions', help='Registered direction NAME or GROUP/NAME (repeatable)', multiple=True, metavar='NAME')
@click.option('--registry', 'registries', help='Extra direction registry folder to search first (repeatable)', multiple=True, metavar='DIR')
@click.option('--alpha',            help=f'Alphas for every direction: a list -3,0,3 or a sweep START:STOP:COUNT  [default: {SWEEP_COUNT} values from -a to a, a = the direction\'s default strength (ours)]', metavar='ALPHAS')
@click.option('--max-images',       help='Score only the first N images (sorted names; the paper: the first 1000 of CelebA-HQ)', type=int, metavar='N')
@click.option('--lpips-weights',    help='torchvision vgg16 or alexnet state_dict for LPIPS (local file; "random" for tests)  [default: LPIPS off]', metavar='FILE')
@click.option('--lpips-net',        help='LPIPS backbone; auto = from the --lpips-weights file (VGG for "random")', type=click.Choice(['auto', 'vgg', 'alex']), default='auto', show_default=True)
@click.option('--id-weights',       help='ArcFace IR-SE-50 (model_ir_se50.pth) or MoCo-v2 ResNet-50 checkpoint for ID  [default: the --classifier features, else off]', metavar='FILE')
@click.option('--id-domain',        help='Kind of --id-weights', type=click.Choice(['auto', 'face', 'moco']), default='auto', show_default=True)
@click.option('--classifier',       help='gradstyle-classifier/1 file: attribute change of edits (directions named like its attributes), and ID features when no --id-weights', metavar='FILE')
@click.option('--inception-weights', help='torchvision inception_v3 state_dict for FID/KID  [default: pixel-PCA features of the sources (ours)]', metavar='FILE')
@click.option('--project-steps',    help='Adam steps of the project baseline (ours)', type=int, default=PROJECT_STEPS, show_default=True, metavar='INT')
@click.option('--project-lr',       help='Adam learning rate of the project baseline (ours)', type=float, default=PROJECT_LR, show_default=True, metavar='FLOAT')
@click.option('--grid-images',      help='Images in each sample grid (ours)', type=int, default=GRID_IMAGES, show_default=True, metavar='INT')
@click.option('--batch',            help='Images per forward pass', type=int, default=8, show_default=True, metavar='INT')
@click.option('--device',           help='Torch device', default='cpu', show_default=True, metavar='DEV')
@click.option('--seed',             help='Seed of torch\'s RNG (networks run with const noise)', type=int, default=0, show_default=True, metavar='INT')
@click.option('--resume',           help='Continue an eval with the same inputs and options in --outdir: finished methods are kept, an interrupted one continues after its last finished batch', is_flag=True)
@click.option('--record-alpha-range', help='Store each direction\'s useful alpha range (mean edit ID >= --alpha-id-floor) in its registry entry\'s info', is_flag=True)
@click.option('--alpha-id-floor',   help='Edit-ID floor of --record-alpha-range (ours)', type=float, default=ALPHA_ID_FLOOR, show_default=True, metavar='FLOAT')
@click.option('--force',            help='Use directions and an --encoder made for another generator (skip the fingerprint and pairing checks)', is_flag=True)
@click.option('--dry-run', '-n',    help='Print the resolved options as JSON and exit', is_flag=True)
def main(network_pkl, data, outdir, encoder, methods, directions, registries, alpha, max_images, lpips_weights, lpips_net, id_weights, id_domain,
         classifier, inception_weights, project_steps, project_lr, grid_images, batch, device, seed, resume, record_alpha_range,
         alpha_id_floor, force, dry_run):
    """Evaluate GradStyle, e4e, the ablations and a W+ projection on the same images.

    \b
    Example (the paper's Table 1-2 protocol on CelebA-HQ):
    gradstyle-eval --network network-snapshot-000100.pkl --data celeba_hq_test/ --max-images 1000 \\
        --direction pose --direction smile --lpips-weights vgg16-397923af.pth --id-weights model_ir_se50.pth --outdir eval
    \b
    Exit status: 0 all images scored, 1 some skipped or unscored (listed in report.json), 2 usage error.
    """
    c = _run(setup_eval_config, network_pkl, data, outdir=outdir, encoder=encoder, methods=methods, directions=directions,
        registries=registries, alpha=alpha, batch=batch, device=device, seed=seed, max_images=max_images, lpips_weights=lpips_weights, lpips_net=lpips_net,
        id_weights=id_weights, id_domain=id_domain, classifier=classifier, inception_weights=inception_weights,
        project_steps=project_steps, project_lr=project_lr, grid_images=grid_images, resume=resume,
        record_alpha_range=record_alpha_range, alpha_id_floor=alpha_id_floor, force=force)
    if dry_run:
        click.echo(json.dumps(c, indent=2))
        return
    os.makedirs(c.outdir, exist_ok=True)
    report = run_with_bar(functools.partial(_run, run_eval, c), 'Evaluating (methods x images)')
    _summary(c, report)

def _summary(c, report):
    p = report['protocol']
    click.echo(f'{p["num_images"]} images x {len(report["methods"])} methods -> {os.path.join(c.outdir, REPORT_JSON)}')
    for name, m in report['methods'].items():
        t = m['table1']
        click.echo(f'  {name:<11} L2 {t["l2"]:.4f}  PSNR {t["psnr"]:.2f}  SSIM {t["ssim"]:.4f}  {m["cost"]["ms_per_image"]:.1f} ms/image')
    bad = [(n, u) for n, m in report['methods'].items() for u in m['unscored']]
    if p['skipped'] or bad:
        names = [s['image'] for s in p['skipped']] + [f'{u["image"]} ({n}: {u["metric"]})' for n, u in bad]
        click.echo(f'{len(p["skipped"])} skipped, {len(bad)} unscored: {", ".join(names[:5])}{" ..." if len(names) > 5 else ""}', err=True)
        raise SystemExit(1)

#----------------------------------------------------------------------------

if __name__ == '__main__':
    main()

#----------------------------------------------------------------------------
