"""gradstyle-train on a tiny generator and encoder: it learns, routes gradients, snapshots, resumes.

Images: random crops of scikit-image's sample photos at 32x32 (real photos, offline).
"""

import json
import os

import numpy as np
import PIL.Image
import pytest
import torch
from click.testing import CliRunner

from stylegan2_ada_pytorch import dnnlib, legacy
from stylegan2_ada_pytorch.training import training_loop
import copy

from gradstyle_plugin import attach, perceptual, streams, transforms
from gradstyle_plugin import encoder as encoder_module
from gradstyle_plugin.cli import train as train_cli
from gradstyle_plugin.train_config import setup_training_config
from .._tiny_pickles import write_tiny_generator_and_encoder

pytestmark = pytest.mark.integration

#----------------------------------------------------------------------------

def _photo_crops(count, seed):
    import skimage.data as skimage_data
    photos = [skimage_data.astronaut(), skimage_data.coffee(), skimage_data.chelsea(), skimage_data.rocket()]
    rnd = np.random.RandomState(seed)
    crops = []
    for i in range(count):
        photo = photos[i % len(photos)]
        size = rnd.randint(96, min(photo.shape[:2]))
        y, x = rnd.randint(0, photo.shape[0] - size), rnd.randint(0, photo.shape[1] - size)
        crop = PIL.Image.fromarray(photo[y:y + size, x:x + size]).resize((32, 32), PIL.Image.LANCZOS)
        crops.append(np.asarray(crop))
    return crops

@pytest.fixture(scope='module')
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp('gradstyle_inputs')
    data = root / 'train'
    data.mkdir()
    for i, crop in enumerate(_photo_crops(16, seed=0)):
        PIL.Image.fromarray(crop).save(data / f'{i:02d}.png')
    write_tiny_generator_and_encoder(str(root))
    held_out = torch.from_numpy(np.stack(_photo_crops(8, seed=99))).permute(0, 3, 1, 2).float() / 127.5 - 1
    return dnnlib.EasyDict(data=str(data), G=str(root / 'G.pkl'), encoder=str(root / 'encoder.pkl'), held_out=held_out)

def _config(inputs, **overrides):
    opts = dict(network=inputs.G, encoder=inputs.encoder, data=inputs.data, preset='tiny', batch=4, kimg=0.064, lr=2e-3,
        snap=100, workers=0, lpips_weights='random', adv=0.05, grid_images=4, force=True)   # untrained encoder: no pairing check
    opts.update(overrides)
    return setup_training_config(**opts)

def _run(inputs, run_dir, **overrides):
    desc, args, init = _config(inputs, **overrides)
    os.makedirs(run_dir, exist_ok=True)
    args.run_dir = run_dir
    if 'resume_pkl' not in args:
        args.resume_pkl = os.path.join(run_dir, 'init.pkl')
        legacy.save_network_pkl(dict(G=init.G, D=init.D, G_ema=init.G_ema, encoder=init.encoder), args.resume_pkl)
    args.pop('num_gpus')
    return training_loop.training_loop(**args)

def _snapshot(run_dir):
    [name] = [f for f in os.listdir(run_dir) if f.startswith('network-snapshot-')]
    with open(os.path.join(run_dir, name), 'rb') as f:
        return legacy.load_network_pkl(f), os.path.join(run_dir, name)

#----------------------------------------------------------------------------

def _aligner_loss(G, E, x):
    # L_aligner (eq. 10) on held-out images with fixed random perspectives.
    warp = transforms.RandomPerspective(0.3, generator=torch.Generator().manual_seed(0))
    out = streams.run_streams(G, E, x, transform=warp)
    return float(sum((out.aligned[s] - out.residuals[s]).abs().mean() for s in out.aligned))

def test_short_run_beats_encoder_only_reconstruction(inputs, tmp_path, size_scale):
    nets = _run(inputs, str(tmp_path), kimg=0.8 * size_scale)
    G, E, x = nets.G_ema, nets.encoder, inputs.held_out
    lpips = perceptual.build_lpips('random')
    with torch.no_grad():
        out = streams.run_streams(G, E, x, transform=None)
        plain = attach.detach_gradstyle(G).synthesis(out.ws, noise_mode='const')    # e4e only: W+ and the frozen G
        l2_e4e = float((plain - x).square().mean())
        l2_rec = float((out.img_rec - x).square().mean())
        lp_e4e = float(lpips(plain, x).mean())
        lp_rec = float(lpips(out.img_rec, x).mean())
        # L_aligner of the trained GAMs vs the same network with the GAMs reset to their initial weights.
        al_trained = _aligner_loss(G, E, x)
        G_reset = copy.deepcopy(G)
        init_G = legacy.load_network_pkl(open(tmp_path / 'init.pkl', 'rb'))['G_ema']
        init_params = dict(init_G.named_parameters())
        for stage_name, stage in attach.stage_modules(G_reset).items():
            for name, p in stage.aligner.named_parameters():
                p.copy_(init_params[f'synthesis.injectors.{stage_name}.0.aligner.{name}'])
        al_init = _aligner_loss(G_reset, E, x)
    print(f'held-out L2: e4e-only {l2_e4e:.4f} -> GradStyle {l2_rec:.4f}; LPIPS(random VGG): {lp_e4e:.4f} -> {lp_rec:.4f}; '
          f'L_aligner: untrained GAMs {al_init:.4f} -> trained {al_trained:.4f}')
    assert l2_rec < 0.8 * l2_e4e
    assert lp_rec < lp_e4e
    assert al_trained < al_init
    assert os.path.isfile(tmp_path / 'streams_init.png')

def test_the_frozen_generator_is_the_pickles_G_ema(inputs, tmp_path):
    # A generator pickle whose G differs from its G_ema (as after any stylegan2-train run): GradStyle
    # attaches to G_ema and training leaves G_ema's own weights (and its direction fingerprint) as they were.
    import editing_directions as ed
    with open(inputs.G, 'rb') as f:
        data = legacy.load_network_pkl(f)
    G_raw = copy.deepcopy(data['G_ema'])
    with torch.no_grad():
        for p in G_raw.parameters():
            p.add_(0.05 * torch.randn_like(p))
    legacy.save_network_pkl(dict(data, G=G_raw), str(tmp_path / 'G_two.pkl'))
    nets = _run(inputs, str(tmp_path / 'run'), network=str(tmp_path / 'G_two.pkl'), kimg=0.008)
    base = dict(data['G_ema'].named_parameters())
    for name, p in nets.G_ema.named_parameters():
        if not name.startswith('synthesis.injectors.'):
            assert torch.equal(p, base[name]), name
    assert ed.generator_fingerprint(nets.G_ema) == ed.generator_fingerprint(data['G_ema'])
    assert ed.generator_fingerprint(nets.G_ema) != ed.generator_fingerprint(G_raw)

def test_gradient_routing_in_the_training_loss(inputs):
    _desc, args, init = _config(inputs)
    G, D, E = init.G.train(), init.D, init.encoder
    with torch.no_grad():   # as after a few steps: the GRMs produce residuals (at attach time F = 0 and the GAMs idle)
        for stage in attach.stage_modules(G).values():
            stage.grm.out.weight.normal_(0, 0.05)
    loss = dnnlib.util.construct_class_by_name(device=torch.device('cpu'), G_mapping=G.mapping, G_synthesis=G.synthesis,
        D=D, encoder=E, **args.loss_kwargs)
    trainable = [p for n, p in G.named_parameters() if n.startswith('synthesis.injectors.')]
    for p in trainable:
        p.requires_grad_(True)
    real = inputs.held_out[:4]
    loss.accumulate_gradients('Gboth', real, None, None, None, True, 1)
    frozen = [p for n, p in G.named_parameters() if not n.startswith('synthesis.injectors.')]
    assert all(p.grad is None for p in frozen) and all(p.grad is None for p in E.parameters())
    assert all(p.grad is None for p in D.parameters()), 'D got gradients in the G phase'
    assert any(p.grad is not None and float(p.grad.abs().max()) > 0 for p in attach.gam_parameters(G))
    for p in trainable:
        p.grad = None
    # Editing-stream terms alone (L_aligner) reach no GRM parameter.
    out = loss.run_streams(real)
    sum((out.aligned[s] - out.residuals[s].detach()).abs().mean() for s in out.aligned).backward()
    assert all(p.grad is None or float(p.grad.abs().max()) == 0 for p in attach.grm_parameters(G))
    for p in trainable:
        p.requires_grad_(False)
        p.grad = None
    D.requires_grad_(True)
    loss.accumulate_gradients('Dmain', real, None, None, None, True, 1)
    assert all(p.grad is None for p in trainable)
    assert any(p.grad is not None and float(p.grad.abs().max()) > 0 for p in D.parameters())

def test_snapshot_loads_safely_and_resume_matches(inputs, tmp_path):
    full, part, cont = (str(tmp_path / n) for n in ('full', 'part', 'cont'))
    nets_full = _run(inputs, full, kimg=0.032)
    _run(inputs, part, kimg=0.016)
    data, snap = _snapshot(part)
    assert isinstance(data['encoder'], torch.nn.Module) and data['gradstyle_config']['stages'] == ['b8', 'b16', 'b32']
    assert list(data['G_ema'].synthesis.injectors) == ['b8', 'b16', 'b32']
    nets_cont = _run(inputs, cont, kimg=0.032, resume=snap)
    for name in ['G', 'G_ema', 'D']:
        for (n1, t1), (_n2, t2) in zip(nets_full[name].state_dict().items(), nets_cont[name].state_dict().items()):
            assert torch.equal(t1, t2), f'{name}.{n1} differs after resume'

def test_dry_run_prints_json_and_help_documents_defaults(inputs, tmp_path):
    result = CliRunner().invoke(train_cli.main, ['--force', '--network', inputs.G, '--encoder', inputs.encoder, '--data', inputs.data,
        '--outdir', str(tmp_path), '--preset', 'tiny', '--dry-run'])
    assert result.exit_code == 0, result.output
    config = json.loads(result.stdout)
    assert config['G_trainable'] == r'synthesis\.injectors\..*' and config['loss_kwargs']['aligner_weight'] == 1.0
    assert config['G_opt_kwargs']['class_name'] == 'gradstyle_plugin.optim.Lookahead'
    assert os.listdir(tmp_path) == []
    help_text = CliRunner().invoke(train_cli.main, ['--help'], terminal_width=200).output
    for flag in ['--network', '--encoder', '--data', '--outdir', '--batch', '--kimg', '--lr', '--mu', '--stages', '--l2',
                 '--lpips', '--id', '--adv', '--lf', '--aligner', '--id-weights', '--lpips-weights', '--gpus', '--resume',
                 '--seed', '--dry-run']:
        assert flag in help_text, flag

@pytest.mark.parametrize('change, message', [
    (dict(encoder='missing.pkl'), '--encoder: no such file'),
    (dict(network=None), '--network: required'),
    (dict(data='nowhere'), '--data: no such folder or zip'),
    (dict(stages='b4,b8'), '--stages: the encoder has no features for b4'),
    (dict(id_weights='nope.pth'), '--id-weights: no such file'),
])
def test_bad_inputs_name_the_flag(inputs, tmp_path, change, message):
    argv = dict(network=inputs.G, encoder=inputs.encoder, data=inputs.data, outdir=str(tmp_path), preset='tiny')
    argv.update(change)
    args = []
    for key, value in argv.items():
        if value is not None:
            args += [f'--{key.replace("_", "-")}', value]
    result = CliRunner().invoke(train_cli.main, args + ['--dry-run', '--force'])
    assert result.exit_code != 0 and message in result.output, result.output

def test_encoder_generator_mismatch(inputs, tmp_path):
    E = dnnlib.util.construct_class_by_name(**encoder_module.small_encoder_kwargs(32, w_dim=32, feature_channels=32, num_ws=6))
    path = str(tmp_path / 'e6.pkl')
    legacy.save_network_pkl(dict(encoder=E), path)
    with pytest.raises(dnnlib.UserError, match=r'--encoder: .*e6.pkl and the generator of --network .*G.pkl do not fit: the encoder '
            r'gives W\+ codes \[6, 32\], the generator takes \[8, 32\]'):
        _config(inputs, encoder=path)

#----------------------------------------------------------------------------

def test_cli_two_processes_gloo(inputs, tmp_path):
    result = CliRunner().invoke(train_cli.main, ['--force', '--network', inputs.G, '--encoder', inputs.encoder, '--data', inputs.data,
        '--outdir', str(tmp_path), '--preset', 'tiny', '--gpus', '2', '--batch', '4', '--kimg', '0.008', '--workers', '0',
        '--lpips-weights', 'random', '--snap', '1'])
    assert result.exit_code == 0, result.output
    [run_dir] = os.listdir(tmp_path)
    files = os.listdir(tmp_path / run_dir)
    assert {'training_options.json', 'log.txt', 'stats.jsonl', 'streams_init.png'} <= set(files)
    data, _path = _snapshot(str(tmp_path / run_dir))
    assert data['training_state']['cur_nimg'] == 8 and len(data['training_state']['rng']) == 2

def test_snapshot_feeds_gradstyle_edit(inputs, tmp_path):
    from gradstyle_plugin.cli import edit as edit_cli
    run_dir = str(tmp_path / 'run')
    _run(inputs, run_dir, kimg=0.008)
    _data, snap = _snapshot(run_dir)
    direction = str(tmp_path / 'tilt.npy')
    np.save(direction, np.random.RandomState(0).randn(1, 32).astype(np.float32))
    image = str(tmp_path / 'photo.png')
    PIL.Image.fromarray(_photo_crops(1, seed=5)[0]).save(image)
    result = CliRunner().invoke(edit_cli.main, ['--network', snap, '--input', image, '--direction-file', direction,
        '--alpha', '0,2', '--outdir', str(tmp_path / 'out')])
    assert result.exit_code == 0, result.output
    written = sorted(os.listdir(tmp_path / 'out' / 'photo'))
    assert 'reconstruction.png' in written and 'grid.png' in written and 'ws.npy' in written
    assert any(name.startswith('tilt_2') for name in written)
