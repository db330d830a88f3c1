#!/usr/bin/env python
"""Build the Fashion-MNIST demo bundle (gradstyle_plugin/demo/bundle/) from real data, resumably.

    python scripts/build_demo_bundle.py --workdir ~/demo_build                 # everything (hours on CPU)
    python scripts/build_demo_bundle.py --workdir ~/demo_build --generator run/network-snapshot-000400.pkl
    python scripts/build_demo_bundle.py --workdir /tmp/tiny --size tiny --bundle-dir /tmp/tiny/bundle

Run it again after an interruption: finished steps are skipped and training resumes from its last
snapshot. Each step's command output goes to WORKDIR/logs/<step>.log, the progress to WORKDIR/build.log.
"""

import click

from gradstyle_plugin.demo import build as B
from gradstyle_plugin.demo.bundle import BUNDLE_DIR
from stylegan2_ada_pytorch.dnnlib import UserError

@click.command()
@click.option('--workdir', help='Folder for datasets, runs, logs and the build state', required=True, metavar='DIR')
@click.option('--size', type=click.Choice(list(B.SIZES)), default='full', show_default=True, help='Training lengths (ours; tiny = a 2-minute check)')
@click.option('--generator', help='Reuse this stylegan2-train snapshot instead of training one', metavar='PKL')
@click.option('--bundle-dir', default=BUNDLE_DIR, show_default=True, help='Where to write the bundle', metavar='DIR')
@click.option('--step', 'steps', multiple=True, type=click.Choice(B.STEPS), help='Run only these steps (repeatable)  [default: all]')
@click.option('--fashion-dir', default=B.FASHION_DIR, show_default=True, help='Folder of the Fashion-MNIST idx files', metavar='DIR')
@click.option('--device', default='cpu', show_default=True, help='Torch device of the in-process steps', metavar='DEV')
def main(workdir, size, generator, bundle_dir, steps, fashion_dir, device):
    """Build the demo bundle step by step (see gradstyle_plugin/demo/build.py)."""
    try:
        B.build(B.Build(workdir, size, bundle_dir, generator=generator, fashion_dir=fashion_dir, device=device), steps or None)
    except UserError as err:
        raise click.ClickException(str(err))

if __name__ == '__main__':
    main()
