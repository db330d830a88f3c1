"""`gradstyle-train`: train GradStyle's GRMs and GAMs on a frozen generator and encoder (section 3.4).

Runs on the toolkit's training loop, so run dirs, snapshots, stats.jsonl, --resume, --gpus and
torchrun work as in `stylegan2-train`. The configuration comes from the pure `setup_training_config()`;
this command parses options, and the toolkit's launcher (`stylegan2_ada_pytorch.training.launch`)
runs the processes after rank 0 saved the initial networks to a temporary pickle the loop starts from.
"""


import click

from stylegan2_ada_pytorch.dnnlib import UserError
from stylegan2_ada_pytorch.training import launch as toolkit_launch
from gradstyle_plugin import presets
from gradstyle_plugin.train_config import setup_training_config
from gradstyle_plugin.cli._launch import print_or_launch

#----------------------------------------------------------------------------

def _stage_list(value):
    return None if value in (None, '') else [s.strip() for s in value.split(',') if s.strip()]

#----------------------------------------------------------------------------

@click.command()
# Inputs.
@click.option('--network',        help='Generator pickle (any format the toolkit loader reads)', metavar='PKL')
@click.option('--encoder',        help='e4e checkpoint (.pt) or a pickle with an "encoder" entry', metavar='PATH')
@click.option('--data',           help='Training images (folder or zip made by stylegan2-dataset)', required=True, metavar='PATH')
@click.option('--outdir',         help='Where to make the run directory', required=True, metavar='DIR')
@click.option('--resume',         help='Continue a gradstyle-train snapshot (replaces --network/--encoder)', metavar='PKL')
# Model.
@click.option('--preset',         help='Stage widths/depths: paper = c-wide GRM/gate (our reading of the paper), fast = lean CPU widths (ours), tiny = tests (see docs/paper-notes.md)', type=click.Choice(list(presets.config_presets)), default='paper', show_default=True)
@click.option('--stages',         help='Comma-separated stages, e.g. b16,b32,b64 [default: the 3 largest up to 64 (paper)]', metavar='LIST')
@click.option('--mu',             help='Selective Attention kept fraction (0, 1] (ours) [default: preset, 0.5]', type=click.FloatRange(min=0, min_open=True, max=1), metavar='FLOAT')
# Misalignment augmentation of the residuals (section 3.4; the values are HFGI's, ours).
@click.option('--perspective',    help='Random perspective strength, corner offset in half-widths (ours: HFGI\'s 0.15)', type=click.FloatRange(min=0, max=1, max_open=True), default=0.15, show_default=True, metavar='FLOAT')
@click.option('--perspective-p',  help='Probability a sample is warped (ours: HFGI\'s 0.8)', type=click.FloatRange(min=0, max=1), default=0.8, show_default=True, metavar='FLOAT')
@click.option('--perspective-mode', help='inward = corners move inward (torchvision/HFGI, ours); two-sided = both ways (ablation; the old default with --perspective 0.3 --perspective-p 1)', type=click.Choice(['inward', 'two-sided']), default='inward', show_default=True)
# Schedule.
@click.option('--batch',          help='Total batch size (ours: e4e\'s)', type=click.IntRange(min=1), default=4, show_default=True, metavar='INT')
@click.option('--batch-gpu',      help='Samples per process at a time [default: batch / gpus]', type=click.IntRange(min=1), metavar='INT')
@click.option('--kimg',           help='Training duration in thousands of images (ours)', type=click.FloatRange(min=0, min_open=True), default=100, show_default=True, metavar='KIMG')
@click.option('--lr',             help='Learning rate, Adam with Lookahead for GradStyle, Adam for D (ours: e4e\'s)', type=click.FloatRange(min=0, min_open=True), default=1e-4, show_default=True, metavar='FLOAT')
@click.option('--lookahead-k',    help='Lookahead: inner steps per slow update (ours: Lookahead paper\'s)', type=click.IntRange(min=1), default=5, show_default=True, metavar='INT')
@click.option('--lookahead-alpha', help='Lookahead: slow step size (ours: Lookahead paper\'s)', type=click.FloatRange(min=0, max=1), default=0.5, show_default=True, metavar='FLOAT')
@click.option('--ema-kimg',       help='Half-life of the G_ema average in kimg, 0: G_ema = G (ours)', type=click.FloatRange(min=0), default=0, show_default=True, metavar='KIMG')
@click.option('--gpus',           help='Number of processes (GPUs, or CPU processes without CUDA); under torchrun: its WORLD_SIZE', type=click.IntRange(min=1), default=1, show_default=True, metavar='INT')
@click.option('--snap',           help='Snapshot interval in ticks (a tick is kimg/10, at most 4)', type=click.IntRange(min=1), default=10, show_default=True, metavar='TICKS')
@click.option('--seed',           help='Random seed', type=int, default=0, show_default=True, metavar='INT')
# Loss weights.
@click.option('--l2',             help='lambda_l2, both streams (paper: 1, eq. 15)', type=click.FloatRange(min=0), default=1.0, show_default=True, metavar='FLOAT')
@click.option('--lpips',          help='lambda_lpips, both streams (ours: e4e\'s); needs --lpips-weights', type=click.FloatRange(min=0), default=0.8, show_default=True, metavar='FLOAT')
@click.option('--id',             help='lambda_id, both streams (ours: e4e\'s for faces); needs --id-weights', type=click.FloatRange(min=0), default=0.1, show_default=True, metavar='FLOAT')
@click.option('--adv',            help='lambda_adv, both streams (ours)', type=click.FloatRange(min=0), default=0.1, show_default=True, metavar='FLOAT')
@click.option('--lf',             help='lambda_f of the gate regulariser L_f, eq. 5 (ours)', type=click.FloatRange(min=0), default=0.01, show_default=True, metavar='FLOAT')
@click.option('--aligner',        help='lambda_aligner of L_aligner, eq. 10 (ours)', type=click.FloatRange(min=0), default=1.0, show_default=True, metavar='FLOAT')
@click.option('--r1-gamma',       help='R1 weight for fine-tuning D (ours: e4e\'s)', type=click.FloatRange(min=0), default=10.0, show_default=True, metavar='FLOAT')
@click.option('--loss-res',       help='Resolution of the L2/LPIPS/ID terms [default: 256 for generators >= 256 px (e4e face_pool, ours), else full]', type=click.IntRange(min=1), metavar='INT')
@click.option('--edit-trains-gate', help='Editing-stream losses also train the shared Gate&Fusion (ablation; default: reconstruction only, the paper\'s reading)', is_flag=True)
# Loss networks (local files only; nothing is downloaded).
@click.option('--lpips-weights',  help='torchvision vgg16 state dict for LPIPS, or "random" [default: LPIPS off, with a warning]', metavar='PTH')
@click.option('--id-weights',     help='ArcFace model_ir_se50.pth or MoCo-v2 ResNet-50 checkpoint [default: ID loss off, with a warning]', metavar='PTH')
@click.option('--id-domain',      help='Kind of --id-weights', type=click.Choice(['auto', 'face', 'moco']), default='auto', show_default=True)
# Performance, output.
@click.option('--workers',        help='Data loader worker processes', type=click.IntRange(min=0), default=3, show_default=True, metavar='INT')
@click.option('--device',         help='Torch device [default: cuda if available, else cpu]', metavar='DEV')
@click.option('--grid-images',    help='Rows of the source | reconstruction | edit grids', type=click.IntRange(min=1), default=8, show_default=True, metavar='INT')
@click.option('--force',          help='Use an --encoder that fails the pairing check (latent_avg vs w_avg, reconstruction of a few samples; tolerances ours)', is_flag=True)
@click.option('-n', '--dry-run',  help='Print the configuration as JSON and exit', is_flag=True)
def main(outdir, dry_run, stages, **opts):
    """Train GradStyle (GRMs, GAMs and the shared gates) on a frozen StyleGAN2 generator and encoder.

    Values marked "ours" are not given by the paper (its appendix is not available); where each comes
    from is recorded in training_options.json (gradstyle_config.provenance) and docs/paper-notes.md.

    \b
    Examples:

    \b
    # FFHQ at 1024 from NVIDIA's pickle and the official e4e encoder, 8 GPUs:
    gradstyle-train --network ffhq.pkl --encoder e4e_ffhq_encode.pt --data ffhq1024.zip \\
        --outdir runs --gpus 8 --batch 8 --lpips-weights vgg16.pth --id-weights model_ir_se50.pth

    \b
    # A tiny CPU run (32 px generator from stylegan2-train, its encoder from gradstyle-train-encoder):
    gradstyle-train --network tiny.pkl --encoder encoder-snapshot.pkl --data faces32.zip --outdir runs \\
        --preset tiny --kimg 2 --lpips-weights random

    \b
    # 2 machines with 4 GPUs each (run on both, NODE_RANK=0 and 1):
    torchrun --nnodes=2 --node_rank=$NODE_RANK --nproc_per_node=4 --master_addr=host0 --master_port=29500 \\
        -m gradstyle_plugin.cli.train --network ffhq.pkl --encoder e4e_ffhq_encode.pt --data ffhq1024.zip --outdir runs --batch 8
    """
    try:
        opts['gpus'] = toolkit_launch.num_processes(opts['gpus'])
        desc, args, init = setup_training_config(stages=_stage_list(stages), **opts)
        # A fresh run starts from --network + --encoder with GradStyle attached.
        print_or_launch(desc, args, init, outdir, dry_run, dict(G=init.G, D=init.D, G_ema=init.G_ema, encoder=init.encoder))
    except UserError as err:
        raise click.ClickException(str(err))

#----------------------------------------------------------------------------

if __name__ == '__main__':
    main()

#----------------------------------------------------------------------------
