"""Conversion of TensorFlow StyleGAN2 / StyleGAN2-ADA network pickles, without TensorFlow.

A TF pickle is a tuple `(G, D, Gs)` of `dnnlib.tflib.network.Network` objects, which the safe
unpickler turns into `TFNetworkStub` dicts holding `version`, `static_kwargs`, `components` and
`variables` (toolkit-compat.md 3.2). The static kwargs become our constructor kwargs (3.3, 3.5);
each of our parameters and buffers is then filled from one TF variable by a first-match rule table
(3.4, 3.5). Every tensor of ours must be covered by a rule, and shapes must agree after the
transform; unknown static kwargs raise `ValueError('Unknown TensorFlow kwarg ...')`.
"""

import re

import numpy as np
import torch

from . import dnnlib
from ._safe_unpickle import NetworkPickleError, TFNetworkStub

#----------------------------------------------------------------------------

def is_tf_pickle(obj):
    return isinstance(obj, tuple) and len(obj) == 3 and all(isinstance(x, TFNetworkStub) for x in obj)

def collect_tf_params(net, prefix=''):
    """{'mapping/Dense0/weight': ndarray, ...} over a Network stub and its components."""
    version = net.get('version')
    if not isinstance(version, int) or version < 4:
        raise NetworkPickleError(f'TensorFlow network {net.get("name")!r} has format version {version!r}; 4 or newer is required')
    params = {}
    for item in net.get('variables', []):
        if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str) and isinstance(item[1], (np.ndarray, np.generic))):
            raise NetworkPickleError(f'TensorFlow network {net.get("name")!r} has a malformed variables list')
        params[prefix + item[0]] = item[1]
    for name, component in net.get('components', {}).items():
        if not isinstance(component, TFNetworkStub):
            raise NetworkPickleError(f'TensorFlow component {name!r} is not a Network')
        params.update(collect_tf_params(component, prefix + name + '/'))
    return params

class _StaticKwargs:
    """Reads TF static kwargs; anything never read nor ignored is an error at `check()`."""

    def __init__(self, net, ignored):
        self.kwargs = dict(net.get('static_kwargs', {}))
        self.used = set(ignored)

    def __call__(self, key, default=None, none=None):
        self.used.add(key)
        value = self.kwargs.get(key, default)
        return none if (value is None and none is not None) else value

    def check(self):
        for key in self.kwargs:
            if key not in self.used:
                raise ValueError(f'Unknown TensorFlow kwarg {key!r}')

#----------------------------------------------------------------------------
# Transforms from TF layouts to ours.

_TRANSFORMS = {
    'as_is':    lambda v: v,
    'T':        lambda v: v.transpose(),
    'conv':     lambda v: v.transpose(3, 2, 0, 1),
    'flipconv': lambda v: v[::-1, ::-1].transpose(3, 2, 0, 1),
    'first':    lambda v: v[0],
    'noise':    lambda v: v[0, 0],
    'plus1':    lambda v: v + 1,
}

def _apply_rules(module, tf_params, rules, what):
    """Fill every parameter/buffer of `module` from `tf_params` through the (regex, fn) `rules`."""
    tensors = list(module.named_parameters()) + list(module.named_buffers())
    for name, tensor in tensors:
        match, source = next(((m, src) for pattern, src in rules if (m := re.fullmatch(pattern, name))), (None, None))
        if match is None:
            raise NetworkPickleError(f'{what}: no TensorFlow variable rule for {name} {list(tensor.shape)}')
        if source is None:
            continue  # e.g. resample_filter: left as constructed
        tf_name, transform = source(*match.groups())
        if tf_name not in tf_params:
            raise NetworkPickleError(f'{what}: TensorFlow variable {tf_name} (for {name}) is missing')
        value = np.array(_TRANSFORMS[transform](np.asarray(tf_params[tf_name], dtype=np.float32)), order='C')  # keeps 0-d shape
        if list(value.shape) != list(tensor.shape):
            raise NetworkPickleError(f'{what}: {tf_name} gives shape {list(value.shape)} for {name} {list(tensor.shape)}')
        with torch.no_grad():
            tensor.copy_(torch.from_numpy(value))

#----------------------------------------------------------------------------
# Generator (toolkit-compat.md 3.3, 3.4).

_G_IGNORED = ('truncation_psi', 'truncation_cutoff', 'style_mixing_prob', 'structure', 'conditioning', 'fused_modconv')

def generator_kwargs(tf_G):
    kw = _StaticKwargs(tf_G, _G_IGNORED)
    kwargs = dnnlib.EasyDict(
        z_dim                   = kw('latent_size', 512),
        c_dim                   = kw('label_size', 0),
        w_dim                   = kw('dlatent_size', 512),
        img_resolution          = kw('resolution', 1024),
        img_channels            = kw('num_channels', 3),
        mapping_kwargs = dnnlib.EasyDict(
            num_layers          = kw('mapping_layers', 8),
            embed_features      = kw('label_fmaps', None),
            layer_features      = kw('mapping_fmaps', None),
            activation          = kw('mapping_nonlinearity', 'lrelu'),
            lr_multiplier       = kw('mapping_lrmul', 0.01),
            w_avg_beta          = kw('w_avg_beta', 0.995, none=1),
        ),
        synthesis_kwargs = dnnlib.EasyDict(
            channel_base        = kw('fmap_base', 16384) * 2,
            channel_max         = kw('fmap_max', 512),
            num_fp16_res        = kw('num_fp16_res', 0),
            conv_clamp          = kw('conv_clamp', None),
            architecture        = kw('architecture', 'skip'),
            resample_filter     = kw('resample_kernel', [1, 3, 3, 1]),
            use_noise           = kw('use_noise', True),
            activation          = kw('nonlinearity', 'lrelu'),
        ),
    )
    kw.check()
    return kwargs

def _noise_index(res, conv):
    return 2 * int(np.log2(int(res))) - (5 if conv == '0' else 4)

def _synthesis_layer_rules(prefix, tf_layer, noise):
    return [
        (rf'{prefix}\.weight',          lambda *g: (f'{tf_layer(*g)}/weight', 'flipconv' if 'Conv0_up' in tf_layer(*g) else 'conv')),
        (rf'{prefix}\.bias',            lambda *g: (f'{tf_layer(*g)}/bias', 'as_is')),
        (rf'{prefix}\.noise_const',     lambda *g: (f'synthesis/noise{noise(*g)}', 'noise')),
        (rf'{prefix}\.noise_strength',  lambda *g: (f'{tf_layer(*g)}/noise_strength', 'as_is')),
        (rf'{prefix}\.affine\.weight',  lambda *g: (f'{tf_layer(*g)}/mod_weight', 'T')),
        (rf'{prefix}\.affine\.bias',    lambda *g: (f'{tf_layer(*g)}/mod_bias', 'plus1')),
    ]

_G_RULES = [
    (r'mapping\.w_avg',                 lambda: ('dlatent_avg', 'as_is')),
    (r'mapping\.embed\.weight',         lambda: ('mapping/LabelEmbed/weight', 'T')),
    (r'mapping\.embed\.bias',           lambda: ('mapping/LabelEmbed/bias', 'as_is')),
    (r'mapping\.fc(\d+)\.weight',       lambda i: (f'mapping/Dense{i}/weight', 'T')),
    (r'mapping\.fc(\d+)\.bias',         lambda i: (f'mapping/Dense{i}/bias', 'as_is')),
    (r'synthesis\.b4\.const',           lambda: ('synthesis/4x4/Const/const', 'first')),
    *_synthesis_layer_rules(r'synthesis\.b4\.conv1', lambda: 'synthesis/4x4/Conv', lambda: 0),
    *_synthesis_layer_rules(r'synthesis\.b(\d+)\.conv0', lambda r: f'synthesis/{r}x{r}/Conv0_up', lambda r: _noise_index(r, '0')),
    *_synthesis_layer_rules(r'synthesis\.b(\d+)\.conv1', lambda r: f'synthesis/{r}x{r}/Conv1', lambda r: _noise_index(r, '1')),
    (r'synthesis\.b(\d+)\.torgb\.weight',        lambda r: (f'synthesis/{r}x{r}/ToRGB/weight', 'conv')),
    (r'synthesis\.b(\d+)\.torgb\.bias',          lambda r: (f'synthesis/{r}x{r}/ToRGB/bias', 'as_is')),
    (r'synthesis\.b(\d+)\.torgb\.affine\.weight', lambda r: (f'synthesis/{r}x{r}/ToRGB/mod_weight', 'T')),
    (r'synthesis\.b(\d+)\.torgb\.affine\.bias',  lambda r: (f'synthesis/{r}x{r}/ToRGB/mod_bias', 'plus1')),
    (r'synthesis\.b(\d+)\.skip\.weight',         lambda r: (f'synthesis/{r}x{r}/Skip/weight', 'flipconv')),
    (r'.*\.resample_filter',            None),
]

def convert_tf_generator(tf_G, generator_class):
    """Build `generator_class` from a TF generator stub (`G` or `Gs`) and copy its weights."""
    tf_params = collect_tf_params(tf_G)
    if any(name.startswith('synthesis/ToRGB_lod') for name in tf_params):
        raise NetworkPickleError('progressive-growing (architecture "orig") TensorFlow generators are not supported')
    G = generator_class(**generator_kwargs(tf_G)).eval().requires_grad_(False)
    _apply_rules(G, tf_params, _G_RULES, 'TensorFlow generator')
    return G

#----------------------------------------------------------------------------
# Discriminator (toolkit-compat.md 3.5).

def discriminator_kwargs(tf_D, architecture):
    kw = _StaticKwargs(tf_D, ('structure', 'conditioning'))
    act = kw('nonlinearity', 'lrelu')
    kwargs = dnnlib.EasyDict(
        c_dim                   = kw('label_size', 0),
        img_resolution          = kw('resolution', 1024),
        img_channels            = kw('num_channels', 3),
        architecture            = kw('architecture', 'resnet'),
        channel_base            = kw('fmap_base', 16384) * 2,
        channel_max             = kw('fmap_max', 512),
        num_fp16_res            = kw('num_fp16_res', 0),
        conv_clamp              = kw('conv_clamp', None),
        cmap_dim                = kw('mapping_fmaps', None),
        block_kwargs = dnnlib.EasyDict(
            activation          = act,
            resample_filter     = kw('resample_kernel', [1, 3, 3, 1]),
            freeze_layers       = kw('freeze_layers', 0),
        ),
        mapping_kwargs = dnnlib.EasyDict(
            num_layers          = kw('mapping_layers', 0),
            embed_features      = kw('mapping_fmaps', None),
            layer_features      = kw('mapping_fmaps', None),
            activation          = act,
            lr_multiplier       = kw('mapping_lrmul', 0.1),
        ),
        epilogue_kwargs = dnnlib.EasyDict(
            mbstd_group_size    = kw('mbstd_group_size', None),
            mbstd_num_channels  = kw('mbstd_num_features', 1),
            activation          = act,
        ),
    )
    kw.check()
    if architecture is not None:
        kwargs.architecture = architecture
    return kwargs

_D_RULES = [
    (r'b(\d+)\.fromrgb\.weight',        lambda r: (f'{r}x{r}/FromRGB/weight', 'conv')),
    (r'b(\d+)\.fromrgb\.bias',          lambda r: (f'{r}x{r}/FromRGB/bias', 'as_is')),
    (r'b(\d+)\.conv(\d)\.weight',       lambda r, i: (f'{r}x{r}/{["Conv0", "Conv1_down"][int(i)]}/weight', 'conv')),
    (r'b(\d+)\.conv(\d)\.bias',         lambda r, i: (f'{r}x{r}/{["Conv0", "Conv1_down"][int(i)]}/bias', 'as_is')),
    (r'b(\d+)\.skip\.weight',           lambda r: (f'{r}x{r}/Skip/weight', 'conv')),
    (r'mapping\.embed\.weight',         lambda: ('LabelEmbed/weight', 'T')),
    (r'mapping\.embed\.bias',           lambda: ('LabelEmbed/bias', 'as_is')),
    (r'mapping\.fc(\d+)\.weight',       lambda i: (f'Mapping{i}/weight', 'T')),
    (r'mapping\.fc(\d+)\.bias',         lambda i: (f'Mapping{i}/bias', 'as_is')),
    (r'b4\.conv\.weight',               lambda: ('4x4/Conv/weight', 'conv')),
    (r'b4\.conv\.bias',                 lambda: ('4x4/Conv/bias', 'as_is')),
    (r'b4\.fc\.weight',                 lambda: ('4x4/Dense0/weight', 'T')),
    (r'b4\.fc\.bias',                   lambda: ('4x4/Dense0/bias', 'as_is')),
    (r'b4\.out\.weight',                lambda: ('Output/weight', 'T')),
    (r'b4\.out\.bias',                  lambda: ('Output/bias', 'as_is')),
    (r'.*\.resample_filter',            None),
]

def _alias_fromrgb_lod(tf_params, resolution):
    """FromRGB_lod<k>/x -> <r>x<r>/FromRGB/x; returns True when any alias was made ('orig' D)."""
    found = False
    for name in list(tf_params):
        match = re.fullmatch(r'FromRGB_lod(\d+)/(.*)', name)
        if match:
            r = resolution // 2 ** int(match.group(1))
            tf_params[f'{r}x{r}/FromRGB/{match.group(2)}'] = tf_params[name]
            found = True
    return found

def convert_tf_discriminator(tf_D, discriminator_class):
    """Build `discriminator_class` from a TF discriminator stub and copy its weights."""
    tf_params = collect_tf_params(tf_D)
    resolution = dict(tf_D.get('static_kwargs', {})).get('resolution', 1024)
    architecture = 'orig' if _alias_fromrgb_lod(tf_params, resolution) else None
    D = discriminator_class(**discriminator_kwargs(tf_D, architecture)).eval().requires_grad_(False)
    _apply_rules(D, tf_params, _D_RULES, 'TensorFlow discriminator')
    return D

#----------------------------------------------------------------------------

def convert_tf_pickle(obj, networks):
    """(G, D, Gs) stubs -> dict(G=..., D=..., G_ema=...) of `networks.Generator/Discriminator`."""
    tf_G, tf_D, tf_Gs = obj
    return dict(
        G       = convert_tf_generator(tf_G, networks.Generator),
        D       = convert_tf_discriminator(tf_D, networks.Discriminator),
        G_ema   = convert_tf_generator(tf_Gs, networks.Generator),
    )

#----------------------------------------------------------------------------
