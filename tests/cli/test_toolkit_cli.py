"""stylegan2-train and stylegan2-generate through click's CliRunner."""

import json
import os
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
from click.testing import CliRunner

from stylegan2_ada_pytorch import legacy, testing
from stylegan2_ada_pytorch.cli import generate as generate_cli
from stylegan2_ada_pytorch.cli import train as train_cli
from gradstyle_plugin.cli import align as align_cli, directions as directions_cli, edit as edit_cli, eval as eval_cli, train as gs_train_cli
from gradstyle_plugin.cli import demo as demo_cli, train_encoder as gs_train_encoder_cli

DOCS = Path(__file__).resolve().parents[2] / 'docs'

#----------------------------------------------------------------------------

@pytest.fixture(scope='module')
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp('cli_images')
    rnd = np.random.RandomState(0)
    for i in range(8):
        PIL.Image.fromarray(rnd.randint(0, 255, (32, 32, 3), dtype=np.uint8)).save(root / f'{i}.png')
    return str(root)

@pytest.fixture(scope='module')
def tiny_pkl(tmp_path_factory):
    path = tmp_path_factory.mktemp('pkl') / 'tiny.pkl'
    G = testing.tiny_generator()
    legacy.save_network_pkl(dict(G=G, D=testing.tiny_discriminator(), G_ema=G), str(path))
    return str(path)


@pytest.mark.parametrize('cli, name', [(train_cli.main, 'train-help.txt'), (generate_cli.main, 'generate-help.txt'),
    (gs_train_cli.main, 'gradstyle-train-help.txt'), (edit_cli.main, 'gradstyle-edit-help.txt'),
    (directions_cli.main, 'gradstyle-directions-help.txt'), (align_cli.main, 'gradstyle-align-help.txt'),
    (eval_cli.main, 'gradstyle-eval-help.txt'), (gs_train_encoder_cli.main, 'gradstyle-train-encoder-help.txt'),
    (demo_cli.main, 'gradstyle-demo-help.txt')])
def test_help_matches_committed_text(cli, name):
    result = CliRunner().invoke(cli, ['--help'], terminal_width=100)
    assert result.exit_code == 0
    assert result.output == (DOCS / name).read_text(), f'docs/{name} is out of date: regenerate it from --help'

def test_train_dry_run_prints_options(folder, tmp_path):
    result = CliRunner().invoke(train_cli.main, ['--outdir', str(tmp_path), '--data', folder, '--cfg', 'tiny',
        '--kimg', '3', '--mirror', '1', '--aug', 'noaug', '--dry-run'])
    assert result.exit_code == 0, result.output
    text = result.output.split('Training options:\n', 1)[1].split('\n\nOutput directory', 1)[0]
    options = json.loads(text)
    assert options['total_kimg'] == 3 and options['training_set_kwargs']['xflip'] is True
    assert options['run_dir'].endswith('00000-' + os.path.basename(folder) + '-mirror-tiny-kimg3-noaug')
    assert 'augment_kwargs' not in options
    assert os.listdir(tmp_path) == []  # dry run writes nothing

def test_setup_defaults_follow_the_toolkit(folder):
    desc, args = train_cli.setup_training_loop_kwargs(data=folder, gpus=2, cfg='paper256')
    assert desc.endswith('-paper256')
    assert args.batch_size == 64 and args.batch_gpu == 8 and args.ema_kimg == 20 and args.loss_kwargs.r1_gamma == 1
    assert args.G_kwargs.synthesis_kwargs == {'channel_base': 16384, 'channel_max': 512, 'num_fp16_res': 4, 'conv_clamp': 256}
    assert args.ada_target == 0.6 and args.augment_kwargs.class_name.endswith('AugmentPipe')
    desc, args = train_cli.setup_training_loop_kwargs(data=folder, cfg='auto', resume='ffhq256', fp32=True)
    assert desc.endswith('-auto1-resumeffhq256')
    assert args.resume_pkl.endswith('ffhq-res256-mirror-paper256-noaug.pkl') and args.ema_rampup is None
    assert args.G_kwargs.synthesis_kwargs.num_fp16_res == 0 and args.D_kwargs.conv_clamp is None

@pytest.mark.parametrize('argv, message', [
    (['--data', 'no/such/dir'], '--data: no such folder or zip'),
    (['--gpus', '3'], '--gpus must be a power of two'),
    (['--aug', 'fixed'], '--aug=fixed requires --p'),
    (['--metrics', 'fid50k_full'], '--inception-weights'),
    (['--metrics', 'nonsense'], "--metrics: unknown metric 'nonsense'"),
    (['--batch', '6', '--gpus', '4'], '--batch must be at least 1 and divisible by --gpus'),
])
def test_train_bad_input_one_line_error(folder, tmp_path, argv, message):
    argv = ['--outdir', str(tmp_path), '--data', folder] + argv
    result = CliRunner().invoke(train_cli.main, argv)
    assert result.exit_code != 0
    error_lines = [line for line in result.output.splitlines() if line.startswith('Error:')]
    assert len(error_lines) == 1 and message in error_lines[0], result.output

#----------------------------------------------------------------------------

def test_generate_writes_seed_images(tiny_pkl, tmp_path):
    result = CliRunner().invoke(generate_cli.main, ['--network', tiny_pkl, '--seeds', '0-2,7', '--outdir', str(tmp_path), '--trunc', '0.7'])
    assert result.exit_code == 0, result.output
    assert sorted(os.listdir(tmp_path)) == ['seed0000.png', 'seed0001.png', 'seed0002.png', 'seed0007.png']
    img = np.asarray(PIL.Image.open(tmp_path / 'seed0001.png'))
    assert img.shape == (32, 32, 3) and img.std() > 0

def test_generate_is_deterministic_and_matches_python_api(tiny_pkl, tmp_path):
    import torch
    CliRunner().invoke(generate_cli.main, ['--network', tiny_pkl, '--seeds', '5', '--outdir', str(tmp_path)])
    G = legacy.load_network_pkl(open(tiny_pkl, 'rb'))['G_ema']
    z = torch.from_numpy(np.random.RandomState(5).randn(1, G.z_dim)).float()
    expected = generate_cli.to_uint8(G(z, None, noise_mode='const'))[0].numpy()
    assert np.array_equal(np.asarray(PIL.Image.open(tmp_path / 'seed0005.png')), expected)

@pytest.mark.parametrize('argv, message', [
    (['--network', 'missing.pkl', '--seeds', '0'], '--network: no such file: missing.pkl'),
    (['--seeds', 'a-b'], "'a-b' is not a number or a range"),
])
def test_generate_bad_input(tiny_pkl, tmp_path, argv, message):
    if '--network' not in argv:
        argv = ['--network', tiny_pkl] + argv
    result = CliRunner().invoke(generate_cli.main, argv + ['--outdir', str(tmp_path)])
    assert result.exit_code != 0 and message in result.output, result.output

def test_generate_corrupt_pickle_one_line_error(tmp_path):
    bad = tmp_path / 'bad.pkl'
    bad.write_bytes(b'\x80\x04\x95 not really a pickle')
    result = CliRunner().invoke(generate_cli.main, ['--network', str(bad), '--seeds', '0', '--outdir', str(tmp_path / 'o')])
    assert result.exit_code != 0
    assert [line for line in result.output.splitlines() if line.startswith('Error:')], result.output
    assert 'Traceback' not in result.output

#----------------------------------------------------------------------------
