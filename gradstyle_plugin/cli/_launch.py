"""What the GradStyle training commands share after their config is built: --dry-run printing, the
warnings, and starting the toolkit launcher from initial networks (rank 0 writes them once)."""

import json
import os

import click

from stylegan2_ada_pytorch import legacy
from stylegan2_ada_pytorch.training import launch as toolkit_launch

def launch_from(desc, args, outdir, init_networks):
    """Run the training processes; a fresh run (no resume_pkl) starts from `init_networks` (a dict saved as init.pkl)."""
    def save_init(args, temp_dir):   # rank 0 only
        if 'resume_pkl' not in args:
            args.resume_pkl = os.path.join(temp_dir, 'init.pkl')
            legacy.save_network_pkl(init_networks, args.resume_pkl)
    os.makedirs(outdir, exist_ok=True)
    return toolkit_launch.launch(args, outdir, desc, prepare_fn=save_init)

def print_or_launch(desc, args, init, outdir, dry_run, init_networks):
    """--dry-run: print the config as JSON and return None; else show init.warnings and train; returns the run dir.

    Example:
        >>> run_dir = print_or_launch(desc, args, init, 'runs', False, dict(G=init.G, D=init.D, G_ema=init.G_ema))
    """
    main = toolkit_launch.is_main_process()
    if dry_run:
        if main:
            click.echo(json.dumps(args, indent=2))
        return None
    if main:
        for warning in init.warnings:
            click.secho(warning, fg='yellow', bold=True, err=True)
    run_dir = launch_from(desc, args, outdir, init_networks)
    if main:
        click.echo(f'Run directory: {run_dir}')
    return run_dir
