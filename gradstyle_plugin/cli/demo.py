"""`gradstyle-demo`: the bundled Fashion-MNIST GradStyle network on real held-out images, e4e-only vs GradStyle.

The click command only parses; `setup_demo_config()` and `run_demo()` (gradstyle_plugin/demo/run.py)
do the work. Exit status: 0 when every image was read and scored, 1 when some were skipped, 2 for usage errors.
"""

import functools
import json
import os

import click

from stylegan2_ada_pytorch.dnnlib import UserError
from gradstyle_plugin.cli._progress import run_with_bar
from gradstyle_plugin.demo.run import MAX_ROWS, REPORT_MD, run_demo, setup_demo_config

#----------------------------------------------------------------------------

class DemoUsageError(click.ClickException):
    exit_code = 2

def _run(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except UserError as err:
        raise DemoUsageError(str(err).splitlines()[0] if str(err) else type(err).__name__)

@click.command()
@click.option('--outdir',       help='Where to write comparison.png, report.md, summary.json and eval/', default='gradstyle_demo', show_default=True, metavar='DIR')
@click.option('--input',        'input_', help='Your own images instead of the bundled ones: a file, folder (recursive) or zip; any size and mode '
                                '(converted to 32x32 grayscale, centre-cropped; every conversion is listed in eval/report.json)', metavar='PATH')
@click.option('--max-images',   help=f'Use only the first N images (sorted names); comparison.png shows at most {MAX_ROWS}', type=int, metavar='N')
@click.option('--alpha',        help='Alphas for every direction: a list -3,0,3 or a sweep START:STOP:COUNT  [default: 5 values from -a to a, a = the direction\'s default strength (ours)]', metavar='ALPHAS')
@click.option('--bundle',       help='A bundle folder built by scripts/build_demo_bundle.py  [default: the one installed with gradstyle]', metavar='DIR')
@click.option('--device',       help='Torch device', default='cpu', show_default=True, metavar='DEV')
@click.option('--dry-run', '-n', help='Print the resolved options as JSON and exit', is_flag=True)
def main(outdir, input_, max_images, alpha, bundle, device, dry_run):
    """Invert and edit real Fashion-MNIST test images with the bundled network: e4e-only vs GradStyle.

    \b
    Examples:
    gradstyle-demo                                  # the 16 bundled held-out test images -> gradstyle_demo/
    gradstyle-demo --input my_photos/ --outdir out  # your own images (any size/mode)
    gradstyle-edit --network demo --input shirt.png --direction dress --outdir edits   # the same network in gradstyle-edit
    """
    c = _run(setup_demo_config, outdir, input=input_, bundle=bundle, device=device, alpha=alpha, max_images=max_images)
    if dry_run:
        click.echo(json.dumps(c, indent=2))
        return
    summary = run_with_bar(functools.partial(_run, run_demo, c), 'Inverting and editing (methods x images)')
    _print_summary(c, summary)

def _print_summary(c, summary):
    r = summary['reconstruction']
    click.echo(f'{summary["num_images"]} images: L2 e4e {r["e4e"]["l2"]:.4f} -> GradStyle {r["gradstyle"]["l2"]:.4f} ({100 * r["l2_gain"]:+.1f}%), '
        f'1-SSIM {r["e4e"]["one_minus_ssim"]:.4f} -> {r["gradstyle"]["one_minus_ssim"]:.4f} ({100 * r["one_minus_ssim_gain"]:+.1f}%)')
    for check in summary['checks']:
        verdict = 'n/a ' if check['passed'] is None else ('PASS' if check['passed'] else 'FAIL')
        value = '-' if check['value'] is None else f'{check["value"]:.3f}'
        click.echo(f'  {verdict} {check["name"]}: {value} (needs {check["op"]} {check["threshold"]})')
    click.echo(f'Wrote {os.path.join(c.outdir, REPORT_MD)} and {os.path.join(c.outdir, summary["files"]["comparison"])}')
    report = json.load(open(os.path.join(c.eval.outdir, 'report.json'), encoding='utf-8'))
    if report['protocol']['skipped']:
        click.echo(f'{len(report["protocol"]["skipped"])} images skipped (see {c.eval.outdir}/report.md)', err=True)
        raise SystemExit(1)

#----------------------------------------------------------------------------

if __name__ == '__main__':
    main()

#----------------------------------------------------------------------------
