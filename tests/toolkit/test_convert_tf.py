"""TensorFlow StyleGAN2(-ADA) pickles, converted without TensorFlow (toolkit-compat.md 3.2-3.5).

The TF pickles are made here by following the documented layout: `dnnlib.tflib.network.Network`
objects (version 4, static_kwargs, components, variables) whose variables are the weights of a
directly built small network, exported with the inverse of each documented transform (transpose,
[kh,kw,in,out] axes, spatial flip of Conv0_up/Skip, mod_bias - 1, const/noise leading axes).
The converted networks must give the same images and D logits as the directly built ones.
"""

import io
import pickle
import re
import sys
import types

import numpy as np
import pytest
import torch

from stylegan2_ada_pytorch import legacy
from stylegan2_ada_pytorch._safe_unpickle import NetworkPickleError
from stylegan2_ada_pytorch.networks import Discriminator, Generator

#----------------------------------------------------------------------------
# The TF side: Network objects pickled under dnnlib.tflib.network.Network.

class Network:
    def __init__(self, name, static_kwargs, variables, components=None, version=4):
        self._state = dict(version=version, name=name, static_kwargs=static_kwargs, components=components or {},
            build_module_src='# TF build code (never run)\n', build_func_name='G_main', variables=variables)
    def __getstate__(self):
        return self._state

def dump_tf_pickle(nets, monkeypatch):
    module = types.ModuleType('dnnlib.tflib.network')
    module.Network = Network
    for name in ('dnnlib', 'dnnlib.tflib'):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, 'dnnlib.tflib.network', module)
    monkeypatch.setattr(Network, '__module__', 'dnnlib.tflib.network')
    data = pickle.dumps(tuple(nets), protocol=3)
    monkeypatch.undo()
    assert b'dnnlib.tflib.network' in data
    return data

def _np(t):
    return t.detach().cpu().numpy().astype(np.float32)

def tf_conv(w, flip=False):  # torch [out,in,kh,kw] -> TF [kh,kw,in,out]
    v = _np(w).transpose(2, 3, 1, 0)
    return np.ascontiguousarray(v[::-1, ::-1] if flip else v)

def _tf_synthesis_layer(name, r, conv):
    if r == '4':
        return '4x4/Conv', 0
    log2 = int(np.log2(int(r)))
    return (f'{r}x{r}/Conv0_up', 2 * log2 - 5) if conv == '0' else (f'{r}x{r}/Conv1', 2 * log2 - 4)

def export_generator(G):
    """{component: [(name, ndarray)]} for a TF generator holding G's weights."""
    own, mapping, synthesis = [('dlatent_avg', _np(G.mapping.w_avg))], [], []
    for name, t in list(G.named_parameters()) + list(G.named_buffers()):
        if name.endswith('resample_filter') or name == 'mapping.w_avg':
            continue
        if m := re.fullmatch(r'mapping\.(fc(\d+)|embed)\.(weight|bias)', name):
            layer = 'LabelEmbed' if m.group(1) == 'embed' else f'Dense{m.group(2)}'
            mapping.append((f'{layer}/{m.group(3)}', _np(t).T.copy() if m.group(3) == 'weight' else _np(t)))
        elif name == 'synthesis.b4.const':
            synthesis.append(('4x4/Const/const', _np(t)[None]))
        elif m := re.fullmatch(r'synthesis\.b(\d+)\.conv([01])\.(.*)', name):
            layer, noise = _tf_synthesis_layer(name, m.group(1), m.group(2))
            value = dict(weight=lambda: tf_conv(t, flip='Conv0_up' in layer), bias=lambda: _np(t),
                noise_strength=lambda: _np(t), **{'affine.weight': lambda: _np(t).T.copy(), 'affine.bias': lambda: _np(t) - 1})
            if m.group(3) == 'noise_const':
                synthesis.append((f'noise{noise}', _np(t)[None, None]))
            else:
                tf_name = dict(weight='weight', bias='bias', noise_strength='noise_strength')
                tf_name.update({'affine.weight': 'mod_weight', 'affine.bias': 'mod_bias'})
                synthesis.append((f'{layer}/{tf_name[m.group(3)]}', value[m.group(3)]()))
        elif m := re.fullmatch(r'synthesis\.b(\d+)\.torgb\.(weight|bias|affine\.weight|affine\.bias)', name):
            r, p = m.groups()
            tf_name, value = {
                'weight':           ('weight', lambda: tf_conv(t)),
                'bias':             ('bias', lambda: _np(t)),
                'affine.weight':    ('mod_weight', lambda: _np(t).T.copy()),
                'affine.bias':      ('mod_bias', lambda: _np(t) - 1),
            }[p]
            synthesis.append((f'{r}x{r}/ToRGB/{tf_name}', value()))
        elif m := re.fullmatch(r'synthesis\.b(\d+)\.skip\.weight', name):
            synthesis.append((f'{m.group(1)}x{m.group(1)}/Skip/weight', tf_conv(t, flip=True)))
        else:
            raise AssertionError(f'test exporter has no rule for {name}')
    synthesis.append(('lod', np.array(0, dtype=np.float32)))  # extra TF variables are ignored
    return own, mapping, synthesis

def tf_generator(G, static_kwargs, name='G'):
    own, mapping, synthesis = export_generator(G)
    return Network(name, static_kwargs, own, components=dict(
        mapping=Network('G_mapping', {}, mapping), synthesis=Network('G_synthesis', {}, synthesis)))

def export_discriminator(D):
    out = []
    for name, t in list(D.named_parameters()) + list(D.named_buffers()):
        if name.endswith('resample_filter'):
            continue
        if m := re.fullmatch(r'b(\d+)\.(fromrgb|conv0|conv1|skip)\.(weight|bias)', name):
            r, layer, p = m.groups()
            tf_layer = dict(fromrgb='FromRGB', conv0='Conv0', conv1='Conv1_down', skip='Skip')[layer]
            out.append((f'{r}x{r}/{tf_layer}/{p}', tf_conv(t) if p == 'weight' else _np(t)))
        elif m := re.fullmatch(r'b4\.(conv|fc|out)\.(weight|bias)', name):
            layer, p = m.groups()
            tf_layer = dict(conv='4x4/Conv', fc='4x4/Dense0', out='Output')[layer]
            value = (tf_conv(t) if layer == 'conv' else _np(t).T.copy()) if p == 'weight' else _np(t)
            out.append((f'{tf_layer}/{p}', value))
        elif m := re.fullmatch(r'mapping\.(embed|fc(\d+))\.(weight|bias)', name):
            layer = 'LabelEmbed' if m.group(1) == 'embed' else f'Mapping{m.group(2)}'
            out.append((f'{layer}/{m.group(3)}', _np(t).T.copy() if m.group(3) == 'weight' else _np(t)))
        else:
            raise AssertionError(f'test exporter has no rule for {name}')
    return out

#----------------------------------------------------------------------------

def randomize(module, seed):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in list(module.named_parameters()) + list(module.named_buffers()):
            if not name.endswith('resample_filter'):
                t.copy_(torch.randn(t.shape, generator=gen) * 0.5)
    return module

G_STATIC = dict(latent_size=32, label_size=4, dlatent_size=32, resolution=32, num_channels=3, mapping_layers=2,
    fmap_base=128, fmap_max=32, truncation_psi=0.5, structure='auto', style_mixing_prob=0.9)
D_STATIC = dict(label_size=4, resolution=32, num_channels=3, fmap_base=128, fmap_max=32, mapping_layers=2,
    mbstd_group_size=2, architecture='resnet', structure='auto')

def direct_networks(architecture):
    G = Generator(z_dim=32, c_dim=4, w_dim=32, img_resolution=32, img_channels=3, mapping_kwargs=dict(num_layers=2),
        synthesis_kwargs=dict(channel_base=256, channel_max=32, architecture=architecture))
    D = Discriminator(c_dim=4, img_resolution=32, img_channels=3, channel_base=256, channel_max=32,
        mapping_kwargs=dict(num_layers=2, lr_multiplier=0.1), epilogue_kwargs=dict(mbstd_group_size=2))
    return randomize(G.eval(), 1), randomize(D.eval(), 2)

def tf_pickle(G, D, monkeypatch, g_static=G_STATIC, d_static=D_STATIC, **overrides):
    g_static = dict(g_static, architecture=G.synthesis.b8.architecture)
    nets = [tf_generator(G, g_static), Network('D', d_static, export_discriminator(D)), tf_generator(G, g_static, 'Gs')]
    for key, value in overrides.items():
        nets[0]._state[key] = value
    return dump_tf_pickle(nets, monkeypatch)

@pytest.mark.parametrize('architecture', ['skip', 'resnet'])
def test_tf_pickle_converts_to_same_outputs(monkeypatch, architecture):
    G, D = direct_networks(architecture)
    data = tf_pickle(G, D, monkeypatch)
    out = legacy.load_network_pkl(io.BytesIO(data))
    assert out['training_set_kwargs'] is None and out['augment_pipe'] is None
    gen = torch.Generator().manual_seed(3)
    z, c = torch.randn([3, 32], generator=gen), torch.eye(4)[[0, 2, 3]]
    ref = G(z, c, truncation_psi=0.7, noise_mode='const')
    for key in ('G', 'G_ema'):
        img = out[key](z, c, truncation_psi=0.7, noise_mode='const')
        print(f'{architecture} {key} max abs diff:', (img - ref).abs().max().item())
        assert torch.allclose(img, ref, atol=1e-5, rtol=1e-5)
    imgs = torch.randn([4, 3, 32, 32], generator=gen)
    logits, ref_logits = out['D'](imgs, torch.eye(4)), D(imgs, torch.eye(4))
    print('D logits max abs diff:', (logits - ref_logits).abs().max().item())
    assert torch.allclose(logits, ref_logits, atol=1e-5, rtol=1e-5)
    assert out['G_ema'].init_kwargs.synthesis_kwargs.channel_base == 256
    assert out['G_ema'].init_kwargs.mapping_kwargs.w_avg_beta == 0.995

def test_unflipped_conv0_would_be_detected(monkeypatch):
    # The flip in the rules matters: exporting Conv0_up without it changes the image.
    G, D = direct_networks('skip')
    monkeypatch.setattr(sys.modules[__name__], 'tf_conv', lambda w, flip=False: np.ascontiguousarray(_np(w).transpose(2, 3, 1, 0)))
    data = tf_pickle(G, D, monkeypatch)
    z, c = torch.randn([2, 32]), torch.eye(4)[:2]
    diff = (legacy.load_network_pkl(io.BytesIO(data))['G_ema'](z, c, noise_mode='const') - G(z, c, noise_mode='const')).abs().max()
    assert diff > 1e-2

def test_unknown_static_kwarg(monkeypatch):
    G, D = direct_networks('skip')
    data = tf_pickle(G, D, monkeypatch, g_static=dict(G_STATIC, resolution_w=32))
    with pytest.raises(ValueError, match="Unknown TensorFlow kwarg 'resolution_w'"):
        legacy.load_network_pkl(io.BytesIO(data))

@pytest.mark.parametrize('override, message', [
    (dict(version=3), 'format version 3'),
    (dict(components={}), r'TensorFlow variable synthesis/4x4/Const/const \(for synthesis.b4.const\) is missing'),
])
def test_bad_tf_networks(monkeypatch, override, message):
    G, D = direct_networks('skip')
    data = tf_pickle(G, D, monkeypatch, **override)
    with pytest.raises(NetworkPickleError, match=message):
        legacy.load_network_pkl(io.BytesIO(data))

def test_progressive_growing_generator_refused(monkeypatch):
    G, D = direct_networks('skip')
    nets = [tf_generator(G, dict(G_STATIC, architecture='skip')), Network('D', D_STATIC, export_discriminator(D)),
        tf_generator(G, dict(G_STATIC, architecture='skip'), 'Gs')]
    nets[0]._state['components']['synthesis']._state['variables'].append(('ToRGB_lod0/weight', np.zeros([1, 1, 32, 3], np.float32)))
    with pytest.raises(NetworkPickleError, match='progressive-growing'):
        legacy.load_network_pkl(io.BytesIO(dump_tf_pickle(nets, monkeypatch)))

#----------------------------------------------------------------------------

def test_convert_cli(tmp_path, monkeypatch):
    from click.testing import CliRunner
    G, D = direct_networks('skip')
    (tmp_path / 'tf.pkl').write_bytes(tf_pickle(G, D, monkeypatch))
    runner = CliRunner()
    res = runner.invoke(legacy.convert_network_pickle, ['--source', str(tmp_path / 'tf.pkl'), '--dest', str(tmp_path / 'pt.pkl'), '--force-fp16=1'])
    assert res.exit_code == 0, res.output
    out = legacy.load_network_pkl(str(tmp_path / 'pt.pkl'))
    assert out['G_ema'].init_kwargs.synthesis_kwargs.num_fp16_res == 4
    z, c = torch.randn([2, 32]), torch.eye(4)[:2]
    assert torch.allclose(out['G_ema'](z, c, noise_mode='const', force_fp32=True), G(z, c, noise_mode='const'), atol=1e-5)
    res = runner.invoke(legacy.convert_network_pickle, ['--source', str(tmp_path / 'missing.pkl'), '--dest', str(tmp_path / 'x.pkl')])
    assert res.exit_code == 1 and res.output.count('\n') == 1 and 'no such file' in res.output
