"""The GradStyle encoder E_0: an e4e-compatible encoder giving W+ codes and pyramid features T_m.

GradStyle (Gradual Residuals Alignment, section 3.1 "Encoding Phase") embeds a source image X
with the pre-trained e4e encoder of Tov et al., "Designing an Encoder for StyleGAN Image
Manipulation" (SIGGRAPH 2021): T, W+ = E_0(X). W+ holds one code per generator layer, and the
hierarchical features T_m (c = 512 channels) are the maps of the encoder's feature pyramid.

What lives here (every class persistent, plain-data constructor arguments):
- `SEModule`, `BottleneckIRSE`, `IRSEBackbone`: the IR-SE building blocks. The IR-SE-50 layout
  (`IRSE50`) has exactly the state_dict keys `input_layer.*`, `body.<i>.*` of e4e and ArcFace.
- `EqualLinear`, `Map2Style`: e4e's map2style head (stride-2 3x3 convs down to 1x1, then an
  equalized linear layer).
- `E4EEncoder`: backbone + pyramid (`latlayer1`, `latlayer2`) + one `styles.<i>` head per W+
  row; its state_dict (minus `EXTRA_BUFFERS`) equals an e4e checkpoint's `encoder.*` entries.
  `e4e_encoder_kwargs()` gives the official configuration, `small_encoder_kwargs()` a light
  variant for 16-256 px generators (tests, CPU demos).
- `load_e4e_checkpoint()`: strict, weights-only loading of an official e4e `.pt` file.
- `ArcFaceIRSE50` and `load_arcface()`: the face-recognition network of the ID loss.

Shape letters: N batch, C channels (c = feature width of T_m), H W height width, L W+ rows
(num_ws), D w_dim, E embedding width.
"""

import argparse
import os
import warnings

import numpy as np
import torch

from stylegan2_ada_pytorch.torch_utils import misc, persistence
from stylegan2_ada_pytorch import dnnlib

#----------------------------------------------------------------------------
# Fixed layouts.

IRSE50 = dict(                              # The IR-SE-50 body shared by e4e and ArcFace.
    stem_channels   = 64,
    group_units     = [3, 4, 14, 3],
    group_channels  = [64, 128, 256, 512],
    group_strides   = [2, 2, 2, 2],
)
EXTRA_BUFFERS = ('latent_avg',)             # E4EEncoder buffers that e4e keeps outside the encoder's state_dict.
E4E_STYLE_SPLITS = [3, 7]                   # First W+ row fed by the middle (32x32) and the fine (64x64) map.
_CLASS_NAME = 'gradstyle_plugin.encoder.E4EEncoder'

def num_ws_for_resolution(resolution):
    """W+ rows of a StyleGAN2 generator: 2 * log2(resolution) - 2 (18 for 1024, 14 for 256)."""
    log2 = int(np.round(np.log2(resolution)))
    if resolution < 4 or 2 ** log2 != resolution:
        raise ValueError(f'generator resolution must be a power of two >= 4, got {resolution!r}')
    return 2 * log2 - 2

#----------------------------------------------------------------------------
# IR-SE building blocks.

@persistence.persistent_class
class SEModule(torch.nn.Module):
    """Squeeze-and-excitation: scale each channel by sigmoid(fc2(relu(fc1(mean over H, W))))."""

    def __init__(self,
        channels,                   # Number of input/output channels C.
        reduction   = 16,           # Hidden width is C // reduction (at least 1).
    ):
        super().__init__()
        self.channels = channels
        hidden = max(channels // reduction, 1)
        self.fc1 = torch.nn.Conv2d(channels, hidden, kernel_size=1, bias=False)
        self.fc2 = torch.nn.Conv2d(hidden, channels, kernel_size=1, bias=False)

    def forward(self, x):
        misc.assert_shape(x, [None, self.channels, None, None])
        s = x.mean(dim=[2, 3], keepdim=True)                                # [NC11]
        s = torch.sigmoid(self.fc2(torch.relu(self.fc1(s))))
        return x * s

#----------------------------------------------------------------------------

@persistence.persistent_class
class BottleneckIRSE(torch.nn.Module):
    """IR-SE unit: res_layer(x) + shortcut_layer(x).

    res_layer = BN, 3x3 conv (stride 1), PReLU, 3x3 conv (stride s), BN, SE. The shortcut is a
    1x1 max-pool of stride s (plain subsampling) when the widths agree, else a 1x1 conv + BN.
    """

    def __init__(self,
        in_channels,                # Input channels.
        out_channels,               # Output channels.
        stride,                     # Spatial stride of the unit (1 or 2).
        se_reduction    = 16,       # Reduction of the SE module.
    ):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.stride = stride
        if in_channels == out_channels:
            self.shortcut_layer = torch.nn.MaxPool2d(kernel_size=1, stride=stride)
        else:
            self.shortcut_layer = torch.nn.Sequential(
                torch.nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
                torch.nn.BatchNorm2d(out_channels))
        self.res_layer = torch.nn.Sequential(
            torch.nn.BatchNorm2d(in_channels),
            torch.nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=1, padding=1, bias=False),
            torch.nn.PReLU(out_channels),
            torch.nn.Conv2d(out_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False),
            torch.nn.BatchNorm2d(out_channels),
            SEModule(out_channels, reduction=se_reduction))

    def forward(self, x):
        misc.assert_shape(x, [None, self.in_channels, None, None])
        return self.res_layer(x) + self.shortcut_layer(x)

#----------------------------------------------------------------------------
# The stem + body shared by IRSEBackbone, E4EEncoder and ArcFaceIRSE50. The owners register the
# two containers under the names `input_layer` and `body`, which gives the published keys.

def irse_layers(img_channels, stem_channels, group_units, group_channels, group_strides, se_reduction=16):
    """Build (input_layer, body, group_ends): stem, flat Sequential of units, last unit index per group."""
    if not (len(group_units) == len(group_channels) == len(group_strides)) or not group_units:
        raise ValueError('group_units, group_channels and group_strides must be non-empty lists of equal length')
    input_layer = torch.nn.Sequential(
        torch.nn.Conv2d(img_channels, stem_channels, kernel_size=3, stride=1, padding=1, bias=False),
        torch.nn.BatchNorm2d(stem_channels),
        torch.nn.PReLU(stem_channels))
    units = []
    group_ends = []
    in_channels = stem_channels
    for num_units, out_channels, stride in zip(group_units, group_channels, group_strides):
        for idx in range(num_units):
            units.append(BottleneckIRSE(in_channels, out_channels, stride if idx == 0 else 1, se_reduction=se_reduction))
            in_channels = out_channels
        group_ends.append(len(units) - 1)
    return input_layer, torch.nn.Sequential(*units), group_ends

def irse_forward(input_layer, body, group_ends, x):
    """Run stem and body; return the output of every group (finest first)."""
    x = input_layer(x)
    outputs = []
    for idx, unit in enumerate(body):
        x = unit(x)
        if idx in group_ends:
            outputs.append(x)
    return outputs

#----------------------------------------------------------------------------

@persistence.persistent_class
class IRSEBackbone(torch.nn.Module):
    """IR-SE feature extractor: `input_layer` stem and `body` units; forward gives each group's output.

    Example (the IR-SE-50 body of e4e and ArcFace, keys `input_layer.*` and `body.0.*`..`body.23.*`):
        >>> net = IRSEBackbone(**IRSE50)
        >>> feats = net(torch.randn([1, 3, 256, 256]))   # [N,64,128,128] ... [N,512,16,16]
    """

    def __init__(self,
        img_channels    = 3,                    # Input channels.
        stem_channels   = 64,                   # Width of the 3x3 input layer.
        group_units     = [3, 4, 14, 3],        # Bottleneck units per group.
        group_channels  = [64, 128, 256, 512],  # Output width of each group.
        group_strides   = [2, 2, 2, 2],         # Stride of the first unit of each group.
        se_reduction    = 16,                   # SE module reduction.
    ):
        super().__init__()
        self.img_channels = img_channels
        self.input_layer, self.body, self.group_ends = irse_layers(img_channels, stem_channels,
            group_units, group_channels, group_strides, se_reduction)

    def forward(self, x):
        misc.assert_shape(x, [None, self.img_channels, None, None])
        return irse_forward(self.input_layer, self.body, self.group_ends, x)

#----------------------------------------------------------------------------
# map2style.

@persistence.persistent_class
class EqualLinear(torch.nn.Module):
    """Linear layer with equalized learning rate: y = x (w * lr / sqrt(in))^T + b * lr."""

    def __init__(self,
        in_features,                # Input width.
        out_features,               # Output width.
        bias            = True,     # Learn a bias?
        lr_multiplier   = 1,        # Learning-rate multiplier (scales weight and bias at run time).
        bias_init       = 0,        # Initial value of the bias (before lr_multiplier).
    ):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weight = torch.nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = torch.nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / np.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x):
        misc.assert_shape(x, [None, self.in_features])
        b = self.bias * self.bias_gain if self.bias is not None else None
        return torch.nn.functional.linear(x, self.weight * self.weight_gain, b)

    def extra_repr(self):
        return f'in_features={self.in_features:d}, out_features={self.out_features:d}'

#----------------------------------------------------------------------------

@persistence.persistent_class
class Map2Style(torch.nn.Module):
    """e4e's map2style head: log2(spatial) x (3x3 conv stride 2 + LeakyReLU), flatten, EqualLinear."""

    def __init__(self,
        in_channels,                # Channels C of the feature map (kept by the convs).
        out_features,               # Output width (w_dim).
        spatial,                    # Input resolution; the convs bring it down to 1x1.
        negative_slope  = 0.01,     # LeakyReLU slope after each conv.
    ):
        super().__init__()
        num_convs = int(np.round(np.log2(spatial)))
        if spatial < 1 or 2 ** num_convs != spatial:
            raise ValueError(f'Map2Style: spatial must be a power of two, got {spatial!r}')
        self.in_channels = in_channels
        self.spatial = spatial
        layers = []
        for _ in range(num_convs):
            layers.append(torch.nn.Conv2d(in_channels, in_channels, kernel_size=3, stride=2, padding=1))
            layers.append(torch.nn.LeakyReLU(negative_slope))
        self.convs = torch.nn.Sequential(*layers)
        self.linear = EqualLinear(in_channels, out_features)

    def forward(self, x):
        misc.assert_shape(x, [None, self.in_channels, self.spatial, self.spatial])
        x = self.convs(x).reshape(x.shape[0], self.in_channels)               # [NC]
        return self.linear(x)

#----------------------------------------------------------------------------
# The encoder.

@persistence.persistent_class
class E4EEncoder(torch.nn.Module):
    """Encoder4Editing: image -> (W+ codes [N, num_ws, w_dim], pyramid features {stage: T_m}).

    The last three backbone groups give c1 (fine), c2, c3 (coarse, `feature_channels` wide). The
    pyramid is p2 = up(c3) + latlayer1(c2), p1 = up(p2) + latlayer2(c1) (bilinear,
    align_corners=True). Row 0 of W+ is styles[0](c3), repeated for all rows; rows i = 1..k
    (k = `progressive_stage`, all rows by default) add styles[i](c3 | p2 | p1) chosen by
    `style_splits`; finally the `latent_avg` buffer is added. `features` maps the name of the
    generator block whose output has the same resolution ('b16', 'b32', 'b64' for e4e) to c3,
    p2, p1. Inputs are images in [-1, 1]; larger square images are area-resized first.

    Example:
        >>> E = dnnlib.util.construct_class_by_name(**e4e_encoder_kwargs(num_ws=18))
        >>> ws, feats = E(img)              # img [N,3,256,256] or [N,3,1024,1024]
        >>> ws.shape, feats['b64'].shape    # [N,18,512], [N,512,64,64]
        >>> E, info = load_e4e_checkpoint('e4e_ffhq_encode.pt')   # official weights
    """

    def __init__(self,
        num_ws              = 18,                   # Number of W+ rows (18 for a 1024 generator).
        w_dim               = 512,                  # Width of each W+ row.
        img_resolution      = 256,                  # Encoder input resolution.
        img_channels        = 3,                    # Input channels.
        feature_channels    = 512,                  # Width c of the pyramid features (= width of the last group).
        stem_channels       = 64,                   # Width of the input layer.
        group_units         = [3, 4, 14, 3],        # Bottleneck units per backbone group (>= 3 groups).
        group_channels      = [64, 128, 256, 512],  # Output width of each group.
        group_strides       = [2, 2, 2, 2],         # Stride of the first unit of each group.
        se_reduction        = 16,                   # SE module reduction.
        style_splits        = [3, 7],               # First W+ row fed by p2, first fed by p1.
        progressive_stage   = None,                 # Rows 1..k get their delta; None = all rows.
    ):
        super().__init__()
        if len(group_units) < 3 or group_channels[-1] != feature_channels:
            raise ValueError('E4EEncoder: need >= 3 backbone groups, the last one feature_channels wide')
        self.num_ws = num_ws
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.feature_channels = feature_channels
        self.style_splits = list(style_splits)
        self.input_layer, self.body, self.group_ends = irse_layers(img_channels, stem_channels,
            group_units, group_channels, group_strides, se_reduction)
        self.feature_resolutions = _group_resolutions(img_resolution, group_strides)[-1:-4:-1]   # c3, p2, p1
        self.stage_names = [f'b{res}' for res in self.feature_resolutions]
        self.styles = torch.nn.ModuleList([Map2Style(feature_channels, w_dim, self.feature_resolutions[self.style_level(idx)])
            for idx in range(num_ws)])
        self.latlayer1 = torch.nn.Conv2d(group_channels[-2], feature_channels, kernel_size=1)
        self.latlayer2 = torch.nn.Conv2d(group_channels[-3], feature_channels, kernel_size=1)
        self.register_buffer('latent_avg', torch.zeros([num_ws, w_dim]))
        self.set_progressive_stage(progressive_stage)

    def style_level(self, idx):
        """Pyramid level feeding W+ row `idx`: 0 = c3 (coarse), 1 = p2, 2 = p1 (fine)."""
        return sum(int(idx >= split) for split in self.style_splits)

    def set_progressive_stage(self, stage):
        """Use the deltas of rows 1..stage only (e4e's progressive training); None = all rows."""
        stage = self.num_ws - 1 if stage is None else int(stage)
        if not 0 <= stage <= self.num_ws - 1:
            raise ValueError(f'progressive_stage must be in [0, {self.num_ws - 1}], got {stage}')
        self.progressive_stage = stage

    def forward(self, img):
        img = self.prepare_input(img)
        c1, c2, c3 = irse_forward(self.input_layer, self.body, self.group_ends, img)[-3:]
        p2 = _upsample_add(c3, self.latlayer1(c2))
        p1 = _upsample_add(p2, self.latlayer2(c1))
        levels = [c3, p2, p1]
        for feat, res in zip(levels, self.feature_resolutions):
            misc.assert_shape(feat, [img.shape[0], self.feature_channels, res, res])

        w0 = self.styles[0](c3)
        ws = w0.unsqueeze(1).repeat([1, self.num_ws, 1])                        # [NLD]
        for idx in range(1, self.progressive_stage + 1):
            ws[:, idx] += self.styles[idx](levels[self.style_level(idx)])
        ws = ws + self.latent_avg.to(ws.dtype)
        return ws, dict(zip(self.stage_names, levels))

    def prepare_input(self, img):
        """Check [N, C, H, H] and area-resize to img_resolution when larger."""
        misc.assert_shape(img, [None, self.img_channels, None, None])
        size = img.shape[-1]
        if img.shape[-2] != size or size < self.img_resolution:
            raise ValueError(f'E4EEncoder: expected square images of at least {self.img_resolution}x{self.img_resolution}, '
                f'got {img.shape[-2]}x{size}')
        if size > self.img_resolution:
            img = torch.nn.functional.adaptive_avg_pool2d(img, self.img_resolution)
        return img

#----------------------------------------------------------------------------

def _group_resolutions(img_resolution, group_strides):
    # Output resolution of each backbone group (stride-s 3x3 convs with padding 1 give ceil(r / s)).
    resolutions = []
    res = img_resolution
    for stride in group_strides:
        res = -(-res // stride)
        resolutions.append(res)
    return resolutions

def _upsample_add(x, y):
    # Bilinear resize of x to y's size (align_corners=True), plus y.
    return torch.nn.functional.interpolate(x, size=y.shape[-2:], mode='bilinear', align_corners=True) + y

#----------------------------------------------------------------------------
# Configurations.

def e4e_encoder_kwargs(num_ws=18, w_dim=512):
    """Constructor kwargs (with class_name) of the official e4e encoder (IR-SE-50, 256x256 input).

    Example:
        >>> E = dnnlib.util.construct_class_by_name(**e4e_encoder_kwargs(num_ws_for_resolution(1024)))
    """
    return dnnlib.EasyDict(class_name=_CLASS_NAME, num_ws=num_ws, w_dim=w_dim, img_resolution=256, img_channels=3,
        feature_channels=512, se_reduction=16, style_splits=list(E4E_STYLE_SPLITS), **IRSE50)

def small_encoder_kwargs(
    img_resolution,                 # Generator resolution = encoder input resolution (16..256).
    w_dim               = 512,      # Width of each W+ row.
    feature_channels    = 512,      # Width c of the features T_m.
    num_ws              = None,     # W+ rows; None = 2 * log2(img_resolution) - 2.
    units_per_group     = 1,        # Bottleneck units in each of the 4 groups.
    min_channels        = 16,       # Narrowest backbone group.
    img_channels        = 3,        # Input channels.
):
    """Kwargs (with class_name) of a light E4EEncoder for small generators (tests, CPU demos).

    Same structure as e4e (IR-SE units, pyramid, map2style, latent_avg) with 4 groups of widths
    c/8, c/4, c/2, c (at least `min_channels`). The features sit at the three largest generator
    stages up to 64: 'b8', 'b16', 'b32' for a 32 px generator; 'b16', 'b32', 'b64' for 64..256 px.

    Example:
        >>> E = dnnlib.util.construct_class_by_name(**small_encoder_kwargs(32, w_dim=32, feature_channels=32))
        >>> ws, feats = E(img)      # [N,8,32], {'b8': [N,32,8,8], 'b16': ..., 'b32': [N,32,32,32]}
    """
    if img_resolution not in (16, 32, 64, 128, 256):
        raise ValueError(f'small_encoder_kwargs: img_resolution must be a power of two in [16, 256], got {img_resolution!r}')
    num_ws = num_ws_for_resolution(img_resolution) if num_ws is None else num_ws
    factor = img_resolution // min(img_resolution, 64)      # Downsampling before the finest feature map.
    group_channels = [max(feature_channels >> shift, min_channels) for shift in (3, 2, 1)] + [feature_channels]
    group_strides = [min(factor, 2), factor // min(factor, 2), 2, 2]
    return dnnlib.EasyDict(class_name=_CLASS_NAME, num_ws=num_ws, w_dim=w_dim, img_resolution=img_resolution,
        img_channels=img_channels, feature_channels=feature_channels, stem_channels=group_channels[0],
        group_units=[units_per_group] * 4, group_channels=group_channels, group_strides=group_strides,
        se_reduction=16, style_splits=list(E4E_STYLE_SPLITS))

def encoder_kwargs(encoder):
    """The kwargs (with class_name) that rebuild `encoder`; copy weights with misc.copy_params_and_buffers."""
    return dnnlib.EasyDict(class_name=_CLASS_NAME, **encoder.init_kwargs)

#----------------------------------------------------------------------------
# Strict, weights-only loading.

def _source_name(path_or_file):
    if isinstance(path_or_file, (str, os.PathLike)):
        return os.fspath(path_or_file)
    return str(getattr(path_or_file, 'name', '<file object>'))

def _torch_load(path_or_file, name):
    # torch.load(weights_only=True) with one-line errors (argparse.Namespace allowed for `opts`).
    if isinstance(path_or_file, (str, os.PathLike)) and not os.path.isfile(path_or_file):
        raise ValueError(f'{name}: file not found')
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path_or_file, map_location='cpu', weights_only=True)
    except Exception as err:
        lines = str(err).strip().splitlines()
        detail = lines[0][:200] if lines else type(err).__name__
        raise ValueError(f'{name}: cannot read as a weights-only torch checkpoint ({type(err).__name__}: {detail})') from None

def _first(keys, count=5):
    keys = list(keys)
    return ', '.join(keys[:count]) + (f' ... ({len(keys)} in all)' if len(keys) > count else '')

def _describe(value):
    return str(list(value.shape)) if isinstance(value, torch.Tensor) else type(value).__name__

def check_state_dict(expected, state, name, what):
    """Raise ValueError (one line, naming `name`) unless `state` has exactly the keys and shapes of `expected`."""
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    if missing or unexpected:
        parts = [f'missing keys: {_first(missing)}'] if missing else []
        parts += [f'unexpected keys: {_first(unexpected)}'] if unexpected else []
        raise ValueError(f'{name}: {what} weights do not match ({"; ".join(parts)})')
    bad = [key for key in expected if not isinstance(state[key], torch.Tensor) or state[key].shape != expected[key].shape]
    if bad:
        shapes = [f'{key} {_describe(state[key])} (expected {list(expected[key].shape)})' for key in bad[:3]]
        more = f' ... ({len(bad)} in all)' if len(bad) > 3 else ''
        raise ValueError(f'{name}: {what} weights have wrong shapes: {"; ".join(shapes)}{more}')

def build_and_load(cls, kwargs, state, name, what, extra_buffers=()):
    """Build `cls(**kwargs)` without initialising it, then take the tensors of `state` (strict).

    The module is created on the meta device and the checkpoint tensors are assigned to it, so an
    official 1 GB checkpoint is not held twice. `extra_buffers` are ours (not in `state`) and
    start at zero. Returns the module in eval mode with requires_grad False.
    """
    with torch.device('meta'):
        module = cls(**kwargs)
    expected = {k: v for k, v in module.state_dict().items() if k not in extra_buffers}
    check_state_dict(expected, state, name, what)
    state = {key: state[key].detach().to(expected[key].dtype) for key in expected}
    module.load_state_dict(state, strict=False, assign=True)
    for key in extra_buffers:
        owner, _, attr = key.rpartition('.')
        target = module.get_submodule(owner) if owner else module
        target.register_buffer(attr, torch.zeros(getattr(target, attr).shape, dtype=getattr(target, attr).dtype))
    leftover = [key for key, value in module.state_dict().items() if value.is_meta]
    assert not leftover, f'uninitialised tensors after loading: {leftover[:5]}'
    return module.eval().requires_grad_(False)

#----------------------------------------------------------------------------

def _opts_dict(opts, name):
    if opts is None:
        return {}
    if isinstance(opts, argparse.Namespace):
        return dict(vars(opts))
    if not isinstance(opts, dict):
        raise ValueError(f'{name}: "opts" is a {type(opts).__name__}, expected a dict')
    return dict(opts)

def _e4e_num_ws(num_ws, opts, state, name):
    if num_ws is not None:
        return int(num_ws)
    if opts.get('stylegan_size') is not None:
        try:
            return num_ws_for_resolution(int(opts['stylegan_size']))
        except (TypeError, ValueError) as err:
            raise ValueError(f'{name}: bad opts["stylegan_size"] ({err})') from None
    heads = {key.split('.')[1] for key in state if key.startswith('styles.') and key.count('.') >= 2}
    if not heads:
        raise ValueError(f'{name}: cannot tell num_ws (no opts["stylegan_size"] and no styles.* weights); pass num_ws')
    return len(heads)

def _e4e_latent_avg(latent_avg, num_ws, w_dim, name):
    if latent_avg is None:
        return None
    if not isinstance(latent_avg, torch.Tensor) or latent_avg.ndim not in (1, 2) or latent_avg.shape[-1] != w_dim or \
            (latent_avg.ndim == 2 and latent_avg.shape[0] not in (1, num_ws)):
        shape = list(latent_avg.shape) if isinstance(latent_avg, torch.Tensor) else type(latent_avg).__name__
        raise ValueError(f'{name}: latent_avg is {shape}, expected [{num_ws}, {w_dim}] or [{w_dim}]')
    return latent_avg.detach().float().reshape(-1, w_dim).expand(num_ws, w_dim)

_EXPORTED_KEYS = ('num_ws', 'w_dim', 'img_resolution', 'img_channels', 'feature_channels', 'stem_channels', 'group_units',
    'group_channels', 'group_strides', 'se_reduction', 'style_splits')

def _exported_kwargs(opts, num_ws, name):
    # Ours: gradstyle-train-encoder writes the architecture of a non-e4e encoder (a `small` one) into opts.
    kwargs = opts['gradstyle_encoder_kwargs']
    if not isinstance(kwargs, dict) or set(kwargs) - set(_EXPORTED_KEYS) or 'num_ws' not in kwargs or \
            not all(isinstance(v, (int, list)) for v in kwargs.values()):
        raise ValueError(f'{name}: opts["gradstyle_encoder_kwargs"] is not a plain E4EEncoder configuration')
    if int(kwargs['num_ws']) != num_ws:
        raise ValueError(f'{name}: opts["gradstyle_encoder_kwargs"] has num_ws {kwargs["num_ws"]}, expected {num_ws}')
    return dnnlib.EasyDict(class_name=_CLASS_NAME, **kwargs)

def load_e4e_checkpoint(path_or_file, num_ws=None):
    """Load the encoder of an official e4e checkpoint (`e4e_ffhq_encode.pt` & co.), strictly.

    Reads `state_dict` (the `encoder.*` entries; `decoder.*` and `discriminator.*` are ignored,
    see `stylegan2_ada_pytorch.legacy.load_rosinality_generator` for the generator), `latent_avg`
    ([num_ws, 512] or [512]) and `opts` (num_ws = 2 * log2(stylegan_size) - 2 unless given; the
    architecture is e4e's IR-SE-50 unless opts holds our `gradstyle_encoder_kwargs`, written by
    `gradstyle-train-encoder --export-e4e` for a non-e4e encoder).
    Nothing in the file is executed (torch.load with weights_only=True). Returns
    `(encoder, info)`: an E4EEncoder in eval mode with requires_grad False, and an EasyDict with
    `num_ws`, `encoder_kwargs` (to rebuild it), `opts`, `has_latent_avg`, `ignored_keys`.
    Raises ValueError (one line naming the file) for an unreadable file, a checkpoint that is
    not e4e's, or encoder weights whose keys or shapes differ from e4e's.

    Example:
        >>> E, info = load_e4e_checkpoint('e4e_ffhq_encode.pt')
        >>> ws, feats = E(img)                  # [N,18,512], {'b16': ..., 'b32': ..., 'b64': ...}
        >>> G = legacy.load_rosinality_generator('e4e_ffhq_encode.pt')
        >>> rec = G.synthesis(ws, noise_mode='const')
    """
    name = _source_name(path_or_file)
    ckpt = _torch_load(path_or_file, name)
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get('state_dict'), dict):
        raise ValueError(f'{name}: not an e4e checkpoint (expected a dict with a "state_dict" entry)')
    opts = _opts_dict(ckpt.get('opts'), name)
    encoder_type = opts.get('encoder_type', 'Encoder4Editing')
    if encoder_type != 'Encoder4Editing':
        raise ValueError(f'{name}: encoder_type {encoder_type!r} is not supported (only e4e\'s Encoder4Editing)')
    state = {key[len('encoder.'):]: value for key, value in ckpt['state_dict'].items() if key.startswith('encoder.')}
    if not state:
        raise ValueError(f'{name}: state_dict has no encoder.* entries (not an e4e checkpoint)')
    num_ws = _e4e_num_ws(num_ws, opts, state, name)
    kwargs = _exported_kwargs(opts, num_ws, name) if 'gradstyle_encoder_kwargs' in opts else e4e_encoder_kwargs(num_ws=num_ws)
    init_kwargs = {key: value for key, value in kwargs.items() if key != 'class_name'}
    latent_avg = _e4e_latent_avg(ckpt.get('latent_avg'), num_ws, kwargs.get('w_dim', 512), name)
    encoder = build_and_load(E4EEncoder, init_kwargs, state, name, f'e4e encoder (num_ws={num_ws})', EXTRA_BUFFERS)
    use_avg = bool(opts.get('start_from_latent_avg', True))
    if latent_avg is not None and use_avg:
        encoder.latent_avg.copy_(latent_avg)
    elif latent_avg is None and use_avg:
        warnings.warn(f'{name}: no latent_avg in the checkpoint; set it with encoder.latent_avg.copy_(G.mapping.w_avg)', stacklevel=2)
    ignored = [key for key in ckpt['state_dict'] if not key.startswith('encoder.')]
    info = dnnlib.EasyDict(num_ws=num_ws, encoder_kwargs=kwargs, opts=opts, has_latent_avg=latent_avg is not None and use_avg,
        ignored_keys=len(ignored))
    return encoder, info

#----------------------------------------------------------------------------
# ArcFace (ID loss).

@persistence.persistent_class
class ArcFaceIRSE50(torch.nn.Module):
    """ArcFace IR-SE-50 face embedding (the `model_ir_se50.pth` layout): unit-norm [N, E] vectors.

    Input: faces [N, 3, 112, 112] in [-1, 1] (crop and pool a 256 image first, as the ID loss does).
    output_layer = BatchNorm2d, Dropout, Flatten, Linear(512*7*7 -> E), BatchNorm1d.

    Example:
        >>> net = load_arcface('model_ir_se50.pth')
        >>> sim = (net(a) * net(b)).sum(dim=1)      # cosine similarity of two face batches
    """

    def __init__(self,
        img_resolution  = 112,      # Input resolution (the body reduces it 16x).
        embedding_dim   = 512,      # Embedding width E.
        dropout         = 0.4,      # Dropout before the linear layer (training mode only).
    ):
        super().__init__()
        self.img_resolution = img_resolution
        self.embedding_dim = embedding_dim
        self.input_layer, self.body, self.group_ends = irse_layers(3, se_reduction=16, **IRSE50)
        res = _group_resolutions(img_resolution, IRSE50['group_strides'])[-1]
        width = IRSE50['group_channels'][-1]
        self.output_layer = torch.nn.Sequential(
            torch.nn.BatchNorm2d(width),
            torch.nn.Dropout(dropout),
            torch.nn.Flatten(),
            torch.nn.Linear(width * res * res, embedding_dim),
            torch.nn.BatchNorm1d(embedding_dim))

    def forward(self, x):
        misc.assert_shape(x, [None, 3, self.img_resolution, self.img_resolution])
        x = irse_forward(self.input_layer, self.body, self.group_ends, x)[-1]
        x = self.output_layer(x)                                                # [NE]
        return torch.nn.functional.normalize(x, dim=1)

def load_arcface(path_or_file):
    """Load `model_ir_se50.pth` (a plain state_dict) strictly, weights-only; eval mode, no grad.

    Example:
        >>> arcface = load_arcface('pretrained_models/model_ir_se50.pth')
        >>> emb = arcface(faces)            # [N, 512], unit norm
    """
    name = _source_name(path_or_file)
    state = _torch_load(path_or_file, name)
    if isinstance(state, dict) and isinstance(state.get('state_dict'), dict):
        state = state['state_dict']
    if not isinstance(state, dict) or not state:
        raise ValueError(f'{name}: not an ArcFace state_dict (expected a non-empty dict of tensors)')
    return build_and_load(ArcFaceIRSE50, {}, state, name, 'ArcFace IR-SE-50')

#----------------------------------------------------------------------------
