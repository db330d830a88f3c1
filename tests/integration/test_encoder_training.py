"""gradstyle-train-encoder end to end on a tiny 1-channel generator and real Fashion-MNIST images:
config and help, snapshots that gradstyle-train / gradstyle-edit take, exact resume, --export-e4e
read back strictly by load_e4e_checkpoint with the same W+, and the pairing check's shape errors.

(That a short run learns is the slow test in test_encoder_fashion_mnist.py.)
"""

import json
import os

import pytest
import torch
from click.testing import CliRunner

from stylegan2_ada_pytorch import dataset_tool, dnnlib, legacy, testing
from stylegan2_ada_pytorch.training import training_loop
from gradstyle_plugin import e4e_export, pairing
from gradstyle_plugin import encoder as encoder_module
from gradstyle_plugin.cli import train as gradstyle_train_cli
from gradstyle_plugin.cli import train_encoder as cli
from gradstyle_plugin.encoder_train_config import setup_encoder_training_config
from gradstyle_plugin.train_config import load_encoder, setup_training_config

from ..conftest import FASHION_DIR

pytestmark = pytest.mark.integration

#----------------------------------------------------------------------------

@pytest.fixture(scope='module')
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp('encoder_inputs')
    data = str(root / 'fashion32.zip')
    result = CliRunner().invoke(dataset_tool.main, ['--source', str(FASHION_DIR / 't10k-images-idx3-ubyte.gz'), '--dest', data,
        '--max-images', '64', '--width', '32', '--height', '32'])
    assert result.exit_code == 0, result.output
    G = testing.tiny_generator(img_channels=1)
    legacy.save_network_pkl(dict(G=G, D=testing.tiny_discriminator(img_channels=1), G_ema=G), str(root / 'G1.pkl'))
    return dnnlib.EasyDict(data=data, G=str(root / 'G1.pkl'), root=root)

def _config(inputs, **overrides):
    opts = dict(network=inputs.G, data=inputs.data, preset='small', batch=4, kimg=0.016, workers=0, snap=1000, w_pool=6,
        progressive_start=0.004, progressive_step=0.004, lr=1e-3, grid_images=4)
    opts.update(overrides)
    return setup_encoder_training_config(**opts)

def _run(inputs, run_dir, **overrides):
    _desc, args, init = _config(inputs, **overrides)
    os.makedirs(run_dir, exist_ok=True)
    args.run_dir = run_dir
    if 'resume_pkl' not in args:
        args.resume_pkl = os.path.join(run_dir, 'init.pkl')
        legacy.save_network_pkl(dict(G=init.G, D=init.D, G_ema=init.G_ema, encoder=init.encoder, latent_D=init.latent_D),
            args.resume_pkl)
    args.pop('num_gpus')
    return training_loop.training_loop(**args)

def _snapshot_path(run_dir):
    [name] = [f for f in os.listdir(run_dir) if f.startswith('network-snapshot-')]
    return os.path.join(run_dir, name)

def _load(path):
    with open(path, 'rb') as f:
        return legacy.load_network_pkl(f)

#----------------------------------------------------------------------------

def test_dry_run_config_and_help(inputs, tmp_path):
    result = CliRunner().invoke(cli.main, ['--network', inputs.G, '--data', inputs.data, '--outdir', str(tmp_path), '--dry-run'])
    assert result.exit_code == 0, result.output
    config = json.loads(result.stdout)
    assert os.listdir(tmp_path) == []
    assert list(config['extra_phases']) == ['latent_D', 'encoder'] and config['G_trainable'] == config['D_trainable'] == '(?!)'
    assert config['extra_phases']['encoder']['opt_kwargs']['base'] == 'torch.optim.RAdam'
    assert config['extra_phases']['latent_D']['reg_interval'] == 16
    assert config['loss_kwargs']['lpips_weight'] == 0 and config['loss_kwargs']['id_weight'] == 0   # no weight files
    assert config['loss_kwargs']['loss_res'] == 32 and config['loss_kwargs']['delta_weight'] == 2e-4
    record = config['snapshot_extra_data']['encoder_training_config']
    assert record['loss_weights']['requested']['lpips'] == 0.8 and record['loss_weights']['effective']['lpips'] == 0
    assert 300_000 < record['encoder_params'] < 2_000_000
    assert all(v.startswith(('e4e', 'ours')) for v in record['provenance'].values())
    help_text = CliRunner().invoke(cli.main, ['--help'], terminal_width=200).output
    for fragment in ['(e4e: 0.8)', '(e4e: 0.1)', '(e4e: 2e-4)', 'e4e: 1e-4', '(e4e: 2e-5)', 'small: 1e-3 (ours)', 'ours', '--export-e4e', '--resume', '--gpus']:
        assert fragment in help_text, fragment

def test_snapshot_resume_is_exact_and_feeds_gradstyle(inputs, tmp_path):
    full = _run(inputs, str(tmp_path / 'full'), kimg=0.016)
    _run(inputs, str(tmp_path / 'a'), kimg=0.008)
    snap_a = _snapshot_path(str(tmp_path / 'a'))
    state = _load(snap_a)['training_state']
    assert state['cur_nimg'] == 8 and set(state['optimizers']) == {'encoder', 'latent_D'} and state['loss'][0]['nimg'] == 8
    record = _load(snap_a)['encoder_training_config']
    assert record['preset'] == 'small' and record['schedule']['lr'] == 1e-3 and record['schedule']['progressive_step'] == 0.004
    resumed = _run(inputs, str(tmp_path / 'b'), kimg=0.016, resume=snap_a, lr=None, progressive_start=None, progressive_step=None,
        batch=None)     # the recorded schedule
    for name in ['encoder', 'latent_D']:
        for (n1, t1), (n2, t2) in zip(full[name].state_dict().items(), resumed[name].state_dict().items()):
            assert n1 == n2 and torch.equal(t1, t2), f'{name}.{n1} differs after resume'
    G0 = _load(inputs.G)['G_ema']
    for (n1, t1), (_n2, t2) in zip(G0.state_dict().items(), full.G_ema.state_dict().items()):
        assert torch.equal(t1, t2), f'G_ema.{n1} changed'       # the generator is frozen (w_avg included)
    # The snapshot is an --encoder for gradstyle-train (1-channel encoder, 1-channel generator) and a --network for gradstyle-edit.
    snap = _snapshot_path(str(tmp_path / 'full'))
    E = load_encoder(snap)
    assert (E.img_channels, E.num_ws, E.w_dim) == (1, 8, 32) and os.path.isfile(os.path.join(str(tmp_path / 'full'), 'reconstructions000000.png'))
    _desc, args, _init = setup_training_config(network=inputs.G, encoder=snap, data=inputs.data, preset='tiny', workers=0, force=True)
    assert args.extra_kwargs.encoder.img_channels == 1

def test_cli_two_processes_gloo_keep_identical_encoders(inputs, tmp_path):
    result = CliRunner().invoke(cli.main, ['--network', inputs.G, '--data', inputs.data, '--outdir', str(tmp_path), '--gpus', '2',
        '--batch', '4', '--kimg', '0.016', '--workers', '0', '--snap', '1', '--progressive-start', '0.004', '--progressive-step', '0.004'])
    assert result.exit_code == 0, result.output
    [run_dir] = os.listdir(tmp_path)
    data = _load(_snapshot_path(str(tmp_path / run_dir)))
    state = data['training_state']
    assert state['cur_nimg'] == 16 and len(state['rng']) == 2 and [s['nimg'] for s in state['loss']] == [16, 16]
    digests = state['param_digests']       # BatchNorm running statistics are averaged over processes: identical encoders
    assert digests[0]['encoder'] == digests[1]['encoder'] and digests[0]['latent_D'] == digests[1]['latent_D']

def test_export_e4e_same_ws_and_strict(inputs, tmp_path):
    run_dir = str(tmp_path / 'run')
    _run(inputs, run_dir, kimg=0.008)
    snap = _snapshot_path(run_dir)
    out = str(tmp_path / 'exported.pt')
    result = CliRunner().invoke(cli.main, ['--network', snap, '--export-e4e', out])
    assert result.exit_code == 0, result.output
    assert 'decoder.* in rosinality\'s layout' in result.output
    data = _load(snap)
    E_snap = data['encoder'].eval()
    E_pt, info = encoder_module.load_e4e_checkpoint(out)
    x = torch.rand([3, 1, 32, 32]) * 2 - 1
    assert torch.equal(E_snap(x)[0], E_pt(x)[0]) and info.has_latent_avg
    G_pt = legacy.load_rosinality_generator(out)            # the decoder.* entries: the snapshot's generator
    z = torch.randn([2, 32])
    assert torch.equal(G_pt(z, None, noise_mode='const'), data['G_ema'](z, None, noise_mode='const'))
    assert torch.equal(G_pt.mapping.w_avg, E_snap.latent_avg[0])        # e4e's latent_avg becomes the generator's w_avg
    ckpt = torch.load(out, weights_only=True)
    del ckpt['state_dict']['encoder.styles.3.linear.bias']
    torch.save(ckpt, str(tmp_path / 'broken.pt'))
    with pytest.raises(ValueError, match=r'broken.pt: .*missing keys: styles.3.linear.bias'):
        encoder_module.load_e4e_checkpoint(str(tmp_path / 'broken.pt'))

def test_export_e4e_architecture_has_official_layout(tmp_path):
    torch.manual_seed(0)
    E = dnnlib.util.construct_class_by_name(**encoder_module.e4e_encoder_kwargs(num_ws=2)).eval()
    with torch.no_grad():
        E.latent_avg.copy_(torch.randn([512]))
    out = str(tmp_path / 'e4e.pt')
    ckpt, note = e4e_export.export_e4e_checkpoint(E, out)
    assert note is None and not any(k.startswith('decoder.') for k in ckpt['state_dict'])   # no generator given
    assert 'gradstyle_encoder_kwargs' not in ckpt['opts'] and ckpt['opts']['encoder_type'] == 'Encoder4Editing'
    assert sorted(ckpt['state_dict']) == sorted(f'encoder.{k}' for k in E.state_dict() if k != 'latent_avg')
    E_pt, info = encoder_module.load_e4e_checkpoint(out)
    x = torch.rand([1, 3, 256, 256]) * 2 - 1
    assert info.num_ws == 2 and torch.equal(E(x)[0], E_pt(x)[0])

#----------------------------------------------------------------------------
# Pairing: shapes always; latent_avg and reconstruction unless --force.

def test_gradstyle_train_with_3_channel_encoder_and_1_channel_generator(inputs, tmp_path):
    E = dnnlib.util.construct_class_by_name(**encoder_module.small_encoder_kwargs(32, w_dim=32, feature_channels=32))
    path = str(tmp_path / 'rgb_encoder.pkl')
    legacy.save_network_pkl(dict(encoder=E), path)
    for force in ([], ['--force']):
        result = CliRunner().invoke(gradstyle_train_cli.main, ['--network', inputs.G, '--encoder', path, '--data', inputs.data,
            '--outdir', str(tmp_path / 'runs'), '--dry-run', *force])
        assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output     # ClickException, no traceback
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and 'AssertionError' not in result.output
        assert lines[0] == (f'Error: --encoder: {path} and the generator of --network {inputs.G} do not fit: the encoder takes '
            '3-channel images, the generator makes 1-channel images (train an encoder for this generator with gradstyle-train-encoder)')

def test_pairing_refuses_a_foreign_latent_avg_naming_both_files(inputs):
    G = _load(inputs.G)['G_ema']          # untrained: w_avg is 0, so the check uses the mean of mapped z
    E = dnnlib.util.construct_class_by_name(**encoder_module.small_encoder_kwargs(32, w_dim=32, feature_channels=16, img_channels=1))
    other = testing.tiny_generator(seed=5, img_channels=1)
    with torch.no_grad():
        E.latent_avg.copy_(other.mapping(torch.randn([4000, 32]), None)[:, 0].mean(0))   # another generator's mean w
        w_mean = G.mapping(torch.randn([4000, 32]), None)[:, 0].mean(0)
    dist = float((E.latent_avg[0] - w_mean).norm() / w_mean.norm())
    assert dist > 2 * pairing.LATENT_AVG_TOLERANCE
    with pytest.raises(dnnlib.UserError, match=r'^--encoder: enc.pkl does not belong to the generator of --network G.pkl: its '
            r'latent_avg is ([0-9.]+)% away .* or pass --force to use them anyway$') as info:
        pairing.check_pairing(G, E, 'G.pkl', 'enc.pkl')
    reported = float(str(info.value).split('latent_avg is ')[1].split('%')[0]) / 100
    assert abs(reported - dist) < 0.05 * dist
    assert pairing.check_pairing(G, E, 'G.pkl', 'enc.pkl', force=True) is None

#----------------------------------------------------------------------------

def test_pairing_refuses_an_encoder_that_does_not_reconstruct(inputs):
    G = _load(inputs.G)['G_ema']
    E = dnnlib.util.construct_class_by_name(**encoder_module.small_encoder_kwargs(32, w_dim=32, feature_channels=16, img_channels=1))
    with torch.no_grad():
        E.latent_avg.copy_(pairing.mean_w(G))       # the right latent_avg, but untrained: about as good as latent_avg alone
    n = pairing.NUM_SAMPLES
    with torch.no_grad():                           # independent ratio on the same samples
        z = torch.randn([n, 32], generator=torch.Generator().manual_seed(0))
        x = G.synthesis(G.mapping(z, None), noise_mode='const')
        rec = G.synthesis(E.eval()(x)[0], noise_mode='const')
        avg = G.synthesis(E.latent_avg[None].repeat(n, 1, 1), noise_mode='const')
        ratio = float(((rec - x) ** 2).sum() / ((avg - x) ** 2).sum())
    assert ratio > pairing.RECONSTRUCTION_RATIO_MAX
    with pytest.raises(dnnlib.UserError, match=rf'^--encoder: e.pkl does not belong to the generator of --network G.pkl: it '
            rf'reconstructs the generator\'s own samples with {ratio:.2f}x the error of latent_avg alone'):
        pairing.check_pairing(G, E, 'G.pkl', 'e.pkl')

def test_backbone_weights_initialise_the_irse50_body(tmp_path):
    from gradstyle_plugin.encoder_train_config import encoder_preset_kwargs, init_backbone
    arcface = encoder_module.ArcFaceIRSE50().eval()
    path = str(tmp_path / 'model_ir_se50.pth')
    torch.save(arcface.state_dict(), path)
    G = testing.tiny_generator(img_resolution=256)
    E = dnnlib.util.construct_class_by_name(**dict(encoder_preset_kwargs('e4e', G), num_ws=2))    # 2 heads: small enough
    init_backbone(E, path)
    ref = arcface.state_dict()
    body = {k: v for k, v in E.state_dict().items() if k.startswith(('input_layer.', 'body.'))}
    assert len(body) > 300 and all(torch.equal(v, ref[k]) for k, v in body.items())
    small = dnnlib.util.construct_class_by_name(**encoder_module.small_encoder_kwargs(32, w_dim=32, feature_channels=32))
    with pytest.raises(dnnlib.UserError, match=r'^--backbone-weights: .*only --preset e4e'):
        init_backbone(small, path)
    with pytest.raises(dnnlib.UserError, match=r'^--preset e4e: the IR-SE-50 encoder takes 256 px images'):
        encoder_preset_kwargs('e4e', testing.tiny_generator())

#----------------------------------------------------------------------------
