"""Tests for gradstyle_plugin/perceptual.py (LPIPS-VGG and the ArcFace / MoCo ID loss).

Weight files are built here from the published key layouts with random tensors, saved with
torch.save and loaded back; nothing is downloaded (the hub download functions are made to fail).
LPIPS is checked against a float64 re-computation of the LPIPS v0.1 formula (Zhang et al. 2018:
scale, VGG16 relu1_2..relu5_3, unit-normalise over channels, squared difference, 1x1 linear
weights, spatial mean, sum over layers) written with plain convolutions; the face crop + pool of
the ID loss against a NumPy adaptive average pool.
"""

import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from gradstyle_plugin import perceptual

from tests.plugin._spec_state import random_state, spec_keys
VGG16_CFG = [64, 64, 'M', 128, 128, 'M', 256, 256, 256, 'M', 512, 512, 512, 'M', 512, 512, 512] # torchvision vgg16 `features` up to relu5_3
VGG16_TAPS = (3, 8, 15, 22, 29)                                         # indices of relu1_2 ... relu5_3 in `features`

#----------------------------------------------------------------------------
# Helpers.

@pytest.fixture(autouse=True)
def _no_downloads(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError('attempted download')
    monkeypatch.setattr(torch.hub, 'load_state_dict_from_url', fail)
    monkeypatch.setattr(torch.hub, 'download_url_to_file', fail)
    monkeypatch.setattr(urllib.request, 'urlopen', fail)

def _vgg_features_state(gen):
    state, idx, in_ch = {}, 0, 3
    for item in VGG16_CFG:
        if item == 'M':
            idx += 1
            continue
        state[f'features.{idx}.weight'] = torch.randn([item, in_ch, 3, 3], generator=gen) * float(np.sqrt(2 / (in_ch * 9)))
        state[f'features.{idx}.bias'] = torch.randn([item], generator=gen) * 0.05
        in_ch = item
        idx += 2                                                        # conv, relu
    return state

def _lpips_reference(state, lin, x, y):
    # Float64 LPIPS v0.1 (VGG) with explicit convolutions; lin = five [1, C, 1, 1] weights.
    shift = torch.tensor([-.030, -.088, -.188], dtype=torch.float64).reshape(1, 3, 1, 1)
    scale = torch.tensor([.458, .448, .450], dtype=torch.float64).reshape(1, 3, 1, 1)
    def taps(img):
        h = (img.double() - shift) / scale
        out, idx = [], 0
        for item in VGG16_CFG:
            if item == 'M':
                h = torch.nn.functional.max_pool2d(h, 2, 2)
                idx += 1
                continue
            h = torch.relu(torch.nn.functional.conv2d(h, state[f'features.{idx}.weight'].double(),
                state[f'features.{idx}.bias'].double(), padding=1))
            idx += 2
            if idx - 1 in VGG16_TAPS:
                out.append(h)
        return out
    total = 0
    for fx, fy, w in zip(taps(x), taps(y), lin):
        nx = fx / (fx.square().sum(1, keepdim=True).sqrt() + 1e-10)
        ny = fy / (fy.square().sum(1, keepdim=True).sqrt() + 1e-10)
        total = total + ((nx - ny).square() * w.double()).sum(1).mean(dim=[1, 2])
    return total

def _package_lin():
    import lpips
    path = Path(lpips.__file__).parent / 'weights' / 'v0.1' / 'vgg.pth'
    state = torch.load(path, map_location='cpu', weights_only=True)
    return [state[f'lin{i}.model.1.weight'] for i in range(5)]

def _random_tensors(layout, gen):
    return random_state(layout, gen, int_value=0)

def _moco_checkpoint(gen):
    # MoCo-v2 layout: torchvision resnet50 keys under module.encoder_q., an MLP head fc.0 / fc.2, the queue.
    layout = {k: (list(v.shape), str(v.dtype).replace('torch.', '')) for k, v in torchvision.models.resnet50().state_dict().items()}
    layout = {k: v for k, v in layout.items() if not k.startswith('fc.')}
    layout.update({'fc.0.weight': ([2048, 2048], 'float32'), 'fc.0.bias': ([2048], 'float32'),
                   'fc.2.weight': ([128, 2048], 'float32'), 'fc.2.bias': ([128], 'float32')})
    q = {perceptual.MOCO_PREFIX + k: v for k, v in _random_tensors(layout, gen).items()}
    q['module.queue'] = torch.randn(128, 64, generator=gen)
    q['module.queue_ptr'] = torch.zeros(1, dtype=torch.int64)
    return {'epoch': 800, 'arch': 'resnet50', 'state_dict': q}

def _np_adaptive_avg_pool(img, out):
    # img [C, H, W] -> [C, out, out]; bin i covers [floor(i*H/out), ceil((i+1)*H/out)).
    C, H, W = img.shape
    res = np.zeros([C, out, out])
    for i in range(out):
        r0, r1 = (i * H) // out, -((-(i + 1) * H) // out)
        for j in range(out):
            c0, c1 = (j * W) // out, -((-(j + 1) * W) // out)
            res[:, i, j] = img[:, r0:r1, c0:c1].mean(axis=(1, 2))
    return res

def _one_line_error(excinfo, *needles):
    msg = str(excinfo.value)
    assert '\n' not in msg, msg
    for needle in needles:
        assert needle in msg, msg

#----------------------------------------------------------------------------
# LPIPS.

@pytest.fixture(scope='module')
def vgg_file(tmp_path_factory):
    state = _vgg_features_state(torch.Generator().manual_seed(0))
    state['classifier.6.bias'] = torch.zeros(10)                       # ignored
    path = tmp_path_factory.mktemp('vgg') / 'vgg16.pth'
    torch.save(state, path)
    return path, state

def test_lpips_matches_formula(vgg_file):
    path, state = vgg_file
    net = perceptual.build_lpips(str(path))
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(2, 3, 24, 24, generator=gen) * 2 - 1
    y = (x + 0.3 * torch.randn(2, 3, 24, 24, generator=gen)).clamp(-1, 1)
    d = perceptual.lpips_distance(net, x, y)
    ref = _lpips_reference(state, _package_lin(), x, y)
    rel = ((d.double() - ref).abs() / ref.abs()).max().item()
    print(f'LPIPS vs float64 formula: values {d.tolist()}, max rel err {rel:.2e}')
    assert d.shape == (2,) and rel < 1e-4
    assert perceptual.lpips_distance(net, x, x).abs().max() == 0
    net.train()                                                         # no dropout: same value in train mode
    assert torch.equal(perceptual.lpips_distance(net, x, y), d)

def test_lpips_gradient_reaches_images(vgg_file):
    net = perceptual.build_lpips(str(vgg_file[0]))
    x = torch.zeros(1, 3, 16, 16).uniform_(-1, 1).requires_grad_(True)
    perceptual.lpips_distance(net, x, torch.zeros(1, 3, 16, 16)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0

def test_lpips_random_backbone_warns(capsys):
    net = perceptual.build_lpips('random')
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and '--lpips-weights' in out[0] and 'not perceptual' in out[0]
    lin = _package_lin()
    for i in range(5):
        assert torch.equal(net.lins[i].model[-1].weight, lin[i])
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    assert perceptual.lpips_distance(net, x, x).item() == 0

def test_lpips_errors(tmp_path, vgg_file):
    with pytest.raises(ValueError) as err:
        perceptual.build_lpips(str(tmp_path / 'nope.pth'))
    _one_line_error(err, '--lpips-weights', 'file not found')
    state = dict(vgg_file[1])
    state['features.1.weight'] = state.pop('features.0.weight')         # vgg16_bn-like shift
    torch.save(state, tmp_path / 'bad.pth')
    with pytest.raises(ValueError) as err:
        perceptual.build_lpips(str(tmp_path / 'bad.pth'))
    _one_line_error(err, '--lpips-weights', 'missing keys: features.0.weight', 'unexpected keys: features.1.weight')
    state = dict(vgg_file[1])
    state['features.28.weight'] = torch.zeros(512, 256, 3, 3)
    torch.save(state, tmp_path / 'shape.pth')
    with pytest.raises(ValueError) as err:
        perceptual.build_lpips(str(tmp_path / 'shape.pth'))
    _one_line_error(err, '--lpips-weights', 'wrong shapes', 'features.28.weight')
    with pytest.raises(ValueError) as err:
        perceptual.build_lpips(None)
    _one_line_error(err, '--lpips-weights')

#----------------------------------------------------------------------------
# ID loss.

@pytest.fixture(scope='module')
def arcface_file(tmp_path_factory):
    state = _random_tensors(spec_keys('arcface_ir_se50_keys.txt'), torch.Generator().manual_seed(2))
    path = tmp_path_factory.mktemp('arcface') / 'model_ir_se50.pth'
    torch.save(state, path)
    return path, state

@pytest.fixture(scope='module')
def moco_file(tmp_path_factory):
    ckpt = _moco_checkpoint(torch.Generator().manual_seed(3))
    path = tmp_path_factory.mktemp('moco') / 'moco_v2_800ep_pretrain.pt'
    torch.save(ckpt, path)
    return path, ckpt

@pytest.mark.slow
def test_id_loss_arcface(arcface_file):
    path, state = arcface_file
    loss = perceptual.build_id_loss(str(path))                          # auto -> face
    assert loss.domain == 'face'
    for key, value in loss.net.state_dict().items():
        assert torch.equal(value, state[key]), key
    loss.train()
    assert not loss.net.training
    gen = torch.Generator().manual_seed(4)
    x = torch.rand(2, 3, 256, 256, generator=gen) * 2 - 1
    y = torch.rand(2, 3, 256, 256, generator=gen) * 2 - 1
    emb = loss.embed(x)
    norm_err = (emb.norm(dim=1) - 1).abs().max().item()
    same = loss(x, x)
    diff = loss(x, y)
    print(f'ArcFace: |norm-1| {norm_err:.1e}, 1-cos(x,x) {same.abs().max().item():.1e}, 1-cos(x,y) {diff.tolist()}')
    assert emb.shape == (2, 512) and norm_err < 1e-5
    assert same.shape == (2,) and same.abs().max() < 1e-5
    assert (diff > 1e-4).all() and (diff <= 2).all()

@pytest.mark.parametrize('size,box', [(256, (35, 223, 32, 220)), (512, (70, 446, 64, 440))])
def test_face_crop_and_pool(arcface_file, size, box):
    loss = perceptual.build_id_loss(str(arcface_file[0]), domain='face')
    img = torch.randn(1, 3, size, size, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    r0, r1, c0, c1 = box
    ref = _np_adaptive_avg_pool(img[0, :, r0:r1, c0:c1].numpy(), 112)
    err = np.abs(loss.preprocess(img)[0].numpy() - ref).max()
    print(f'face crop+pool at {size}: max abs err {err:.1e}')
    assert err < 1e-12

@pytest.mark.slow
def test_id_loss_moco(moco_file):
    path, ckpt = moco_file
    loss = perceptual.build_id_loss(str(path), domain='auto')
    assert loss.domain == 'moco'
    gen = torch.Generator().manual_seed(6)
    x = torch.rand(2, 3, 224, 224, generator=gen) * 2 - 1
    y = torch.rand(2, 3, 224, 224, generator=gen) * 2 - 1
    mean = torch.tensor([0.485, 0.456, 0.406]).reshape(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).reshape(1, 3, 1, 1)
    ref_net = torchvision.models.resnet50()                             # independent path: torchvision + stripped keys
    ref_net.fc = torch.nn.Identity()
    ref_net.load_state_dict({k[len('module.encoder_q.'):]: v for k, v in ckpt['state_dict'].items()
        if k.startswith('module.encoder_q.') and not k.startswith('module.encoder_q.fc.')})
    ref = ref_net.eval()(((x + 1) / 2 - mean) / std)
    ref = ref / ref.norm(dim=1, keepdim=True)
    emb = loss.embed(x)
    err = (emb - ref).abs().max().item()
    same, diff = loss(x, x), loss(x, y)
    print(f'MoCo: emb vs torchvision path {err:.1e}, |norm-1| {(emb.norm(dim=1) - 1).abs().max().item():.1e}, '
          f'1-cos(x,x) {same.abs().max().item():.1e}, 1-cos(x,y) {diff.tolist()}')
    assert emb.shape == (2, 2048) and err < 1e-5
    assert same.abs().max() < 1e-5 and (diff > 1e-6).all()
    assert loss.preprocess(torch.zeros(1, 3, 256, 256)).shape == (1, 3, 224, 224)

def test_id_loss_wrong_kind(tmp_path):
    # Tiny files with the distinguishing keys: the kind check comes before any shape check.
    moco = {'state_dict': {'module.encoder_q.conv1.weight': torch.zeros(1), 'module.encoder_k.conv1.weight': torch.zeros(1)}}
    arc = {'input_layer.0.weight': torch.zeros(1), 'output_layer.3.weight': torch.zeros(1)}
    torch.save(moco, tmp_path / 'moco.pt')
    torch.save(arc, tmp_path / 'arc.pth')
    torch.save({'foo': torch.zeros(1)}, tmp_path / 'other.pt')
    torch.save({'conv1.weight': torch.zeros(1), 'layer4.0.conv1.weight': torch.zeros(1)}, tmp_path / 'tv.pt')
    cases = [
        ('moco.pt', 'face', 'this looks like a MoCo ResNet-50 file, not ArcFace'),
        ('arc.pth', 'moco', 'this looks like an ArcFace IR-SE-50 file, not a MoCo-v2'),
        ('other.pt', 'auto', 'not an ArcFace IR-SE-50'),
        ('tv.pt', 'moco', 'plain ResNet state_dict'),
        ('missing.pt', 'auto', 'file not found'),
    ]
    for file_name, domain, needle in cases:
        with pytest.raises(ValueError) as err:
            perceptual.build_id_loss(str(tmp_path / file_name), domain=domain)
        _one_line_error(err, '--id-weights', file_name, needle)

def test_id_loss_bad_shapes_and_options(tmp_path, arcface_file):
    state = dict(arcface_file[1])
    state['output_layer.3.weight'] = torch.zeros(512, 512)
    torch.save(state, tmp_path / 'arc.pth')
    with pytest.raises(ValueError) as err:
        perceptual.build_id_loss(str(tmp_path / 'arc.pth'))
    _one_line_error(err, '--id-weights', 'wrong shapes', 'output_layer.3.weight')
    assert perceptual.build_id_loss(None, domain='off') is None
    with pytest.raises(ValueError, match='domain'):
        perceptual.build_id_loss(str(tmp_path / 'arc.pth'), domain='cars')
    with pytest.raises(ValueError) as err:
        perceptual.build_id_loss(None)
    _one_line_error(err, '--id-weights')

#----------------------------------------------------------------------------
