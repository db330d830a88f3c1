"""`gradstyle-train-encoder`: train an e4e encoder (Tov et al. 2021) for any generator the toolkit reads.

Runs on the toolkit's training loop like `gradstyle-train` (run dirs, snapshots, stats.jsonl,
--resume, --gpus, torchrun). The configuration comes from the pure
`encoder_train_config.setup_encoder_training_config()`; this command parses options, launches, and
with `--export-e4e` writes the encoder of the last snapshot (or of a given snapshot) as an
official e4e checkpoint.
"""

import os

import click

from stylegan2_ada_pytorch.dnnlib import UserError
from stylegan2_ada_pytorch.training import launch as toolkit_launch
from gradstyle_plugin import e4e_export
from gradstyle_plugin.encoder_train_config import ENCODER_PRESETS, setup_encoder_training_config
from gradstyle_plugin.train_config import _load_snapshot
from gradstyle_plugin.cli._launch import print_or_launch

#----------------------------------------------------------------------------

def last_snapshot(run_dir):
    names = sorted(f for f in os.listdir(run_dir) if f.startswith('network-snapshot-') and f.endswith('.pkl'))
    if not names:
        raise UserError(f'--export-e4e: the run {run_dir} wrote no network snapshot')
    return os.path.join(run_dir, names[-1])

def export(snapshot, out):
    """Write the encoder of `snapshot` to `out` in e4e's checkpoint layout."""
    data = _load_snapshot(snapshot, '--network')
    if data.get('encoder') is None:
        raise UserError(f'--export-e4e: {snapshot} holds no "encoder" (give a gradstyle-train-encoder snapshot as --network)')
    _ckpt, note = e4e_export.export_e4e_checkpoint(data['encoder'], out, G=data.get('G_ema'))
    layout = 'e4e IR-SE-50' if e4e_export.is_e4e_architecture(data['encoder']) else 'non-e4e architecture, recorded in opts'
    decoder = 'decoder.* in rosinality\'s layout' if note is None else f'no decoder.*: {note}'
    click.echo(f'Wrote {out} ({layout}; {decoder}) from {snapshot}')

#----------------------------------------------------------------------------

@click.command()
# Inputs.
@click.option('--network',        help='Generator file (any format the toolkit loader reads); with --export-e4e and no --data: the snapshot to export', metavar='PKL')
@click.option('--data',           help='Training images at the generator\'s resolution (folder or zip made by stylegan2-dataset)', metavar='PATH')
@click.option('--outdir',         help='Where to make the run directory', metavar='DIR')
@click.option('--resume',         help='Continue a gradstyle-train-encoder snapshot exactly (replaces --network; keeps its preset and schedule unless given)', metavar='PKL')
@click.option('--export-e4e',     help='Write the encoder as an e4e checkpoint (.pt): of the run\'s last snapshot, or of --network without --data', metavar='PT')
# Architecture and schedule.
@click.option('--preset',         help='e4e = IR-SE-50 at 256 px (e4e\'s); small = a ~1M-parameter encoder for 32-64 px generators on CPU (ours)', type=click.Choice(list(ENCODER_PRESETS)), default='small', show_default=True)
@click.option('--backbone-weights', help='ArcFace model_ir_se50.pth to initialise the IR-SE-50 backbone (e4e\'s init; --preset e4e) [default: random, ours]', metavar='PTH')
@click.option('--batch',          help='Total batch size [default: preset; e4e: 8 (e4e\'s), small: 8 (ours)]', type=click.IntRange(min=1), metavar='INT')
@click.option('--batch-gpu',      help='Samples per process at a time [default: batch / gpus]', type=click.IntRange(min=1), metavar='INT')
@click.option('--kimg',           help='Training length in thousands of images [default: preset; e4e: 1600, small: 20 (ours)]', type=click.FloatRange(min=0, min_open=True), metavar='KIMG')
@click.option('--progressive-start', help='kimg before the first delta row [default: e4e: 160 (e4e\'s 20k steps at batch 8), small: 2 (ours)]', type=click.FloatRange(min=0), metavar='KIMG')
@click.option('--progressive-step', help='kimg between two more delta rows [default: e4e: 16 (e4e\'s 2k steps at batch 8), small: 0.5 (ours)]', type=click.FloatRange(min=0, min_open=True), metavar='KIMG')
@click.option('--progressive/--no-progressive', help='Progressive delta rows (e4e\'s); off = all rows from the start', default=True, show_default=True)
@click.option('--gpus',           help='Number of processes (GPUs, or CPU processes with gloo)', type=click.IntRange(min=1), default=1, show_default=True, metavar='INT')
@click.option('--snap',           help='Snapshot interval in ticks (a tick is kimg/10, at most 4) (ours)', type=click.IntRange(min=1), default=10, show_default=True, metavar='TICKS')
@click.option('--seed',           help='Random seed', type=int, default=0, show_default=True, metavar='INT')
# Optimisers.
@click.option('--optimizer',      help='ranger = RAdam + Lookahead (e4e\'s); adam-lookahead = Adam + Lookahead k 5, alpha 0.5 (ours)', type=click.Choice(['ranger', 'adam-lookahead']), default='ranger', show_default=True)
@click.option('--lr',             help='Encoder learning rate [default: preset; e4e: 1e-4 (e4e\'s), small: 1e-3 (ours)]', type=click.FloatRange(min=0, min_open=True), metavar='FLOAT')
@click.option('--d-lr',           help='Latent discriminator learning rate, Adam (e4e: 2e-5)', type=click.FloatRange(min=0, min_open=True), default=2e-5, show_default=True, metavar='FLOAT')
@click.option('--w-pool',         help='Past codes kept for the latent discriminator; 0 = off (e4e: 50, --use_w_pool)', type=click.IntRange(min=0), default=50, show_default=True, metavar='INT')
@click.option('--r1-gamma',       help='R1 weight of the latent discriminator, every 16 steps (e4e: 10)', type=click.FloatRange(min=0), default=10.0, show_default=True, metavar='FLOAT')
# Loss weights.
@click.option('--l2',             help='lambda_l2 (e4e: 1.0)', type=click.FloatRange(min=0), default=1.0, show_default=True, metavar='FLOAT')
@click.option('--lpips',          help='lambda_lpips (e4e: 0.8); needs --lpips-weights', type=click.FloatRange(min=0), default=0.8, show_default=True, metavar='FLOAT')
@click.option('--id',             help='lambda_id (e4e: 0.1); needs --id-weights', type=click.FloatRange(min=0), default=0.1, show_default=True, metavar='FLOAT')
@click.option('--adv',            help='lambda of the latent discriminator term (e4e: 0.1); 0 = no latent discriminator', type=click.FloatRange(min=0), default=0.1, show_default=True, metavar='FLOAT')
@click.option('--delta',          help='lambda of the delta regularisation (e4e: 2e-4)', type=click.FloatRange(min=0), default=2e-4, show_default=True, metavar='FLOAT')
@click.option('--loss-res',       help='Resolution of the L2/LPIPS/ID terms [default: the encoder\'s input resolution, e4e\'s face_pool]', type=click.IntRange(min=1), metavar='INT')
@click.option('--lpips-weights',  help='torchvision vgg16 state dict for LPIPS, or "random" [default: LPIPS off, with a warning]', metavar='PTH')
@click.option('--id-weights',     help='ArcFace model_ir_se50.pth (faces) or MoCo-v2 ResNet-50 (other domains) [default: ID off, with a warning]', metavar='PTH')
@click.option('--id-domain',      help='Kind of --id-weights', type=click.Choice(['auto', 'face', 'moco']), default='auto', show_default=True)
# Performance, output.
@click.option('--workers',        help='Data loader worker processes', type=click.IntRange(min=0), default=3, show_default=True, metavar='INT')
@click.option('--device',         help='Torch device [default: cuda if available, else cpu]', metavar='DEV')
@click.option('--grid-images',    help='Rows of the source | reconstruction grids', type=click.IntRange(min=1), default=8, show_default=True, metavar='INT')
@click.option('-n', '--dry-run',  help='Print the configuration as JSON and exit', is_flag=True)
def main(outdir, dry_run, export_e4e, **opts):
    """Train an e4e encoder (W+ = latent_avg + deltas) for a frozen StyleGAN2 generator.

    Values marked "e4e" are those of Tov et al. 2021 and their code; "ours" are our choices. Where
    each comes from is recorded in training_options.json (encoder_training_config.provenance).
    Snapshots hold `encoder` and the generator: pass them to gradstyle-train / gradstyle-edit --encoder.

    \b
    Examples:

    \b
    # A 32 px Fashion-MNIST generator on CPU:
    gradstyle-train-encoder --network fashion.pkl --data fashion32.zip --outdir runs --preset small --kimg 20

    \b
    # e4e's recipe for an FFHQ 1024 generator, 8 GPUs, then an official-layout checkpoint:
    gradstyle-train-encoder --network ffhq.pkl --data ffhq1024.zip --outdir runs --preset e4e --gpus 8 \\
        --lpips-weights vgg16.pth --id-weights model_ir_se50.pth --backbone-weights model_ir_se50.pth --export-e4e e4e_mine.pt

    \b
    # Export a snapshot only:
    gradstyle-train-encoder --network runs/00000-.../network-snapshot-000020.pkl --export-e4e mine.pt
    """
    try:
        if export_e4e is not None and opts['data'] is None and opts['resume'] is None:
            export(opts['network'], export_e4e)
            return
        if outdir is None and not dry_run:
            raise UserError('--outdir: required for training')
        opts['gpus'] = toolkit_launch.num_processes(opts['gpus'])
        desc, args, init = setup_encoder_training_config(**opts)
        run_dir = print_or_launch(desc, args, init, outdir, dry_run,
            dict(G=init.G, D=init.D, G_ema=init.G_ema, encoder=init.encoder, latent_D=init.latent_D))
        if run_dir is not None and export_e4e is not None and toolkit_launch.is_main_process():
            export(last_snapshot(run_dir), export_e4e)
    except UserError as err:
        raise click.ClickException(str(err))

#----------------------------------------------------------------------------

if __name__ == '__main__':
    main()

#----------------------------------------------------------------------------
