"""StyleGAN2 generator and discriminator, as used by StyleGAN2-ADA.

Karras et al., "Analyzing and Improving the Image Quality of StyleGAN" (CVPR 2020), config F:
weight demodulation (section 2.2), skip-connection generator and residual discriminator
(section 4.1); with the mixed-precision and output-clamping options added by Karras et al.,
"Training Generative Adversarial Networks with Limited Data" (NeurIPS 2020).

Written from a public description of the toolkit's classes, so that the class names, constructor
arguments, state_dict keys, pickled attributes and numerics are those of NVIDIA's
`training/networks.py`: their network pickles load into these classes and ours into theirs.

Additions (a plain network still has exactly the toolkit's keys and pickled state):
- fp16 blocks run in fp32 automatically when their input is not on a CUDA device
  (`force_fp32=None` means "auto"; pass `force_fp32=False` to insist on fp16);
- feature injection between synthesis blocks (`injector_kwargs`, `register_injector`,
  `inject_kwargs`), see `stylegan2_ada_pytorch.injection` for the public description;
- `MappingNetwork` accepts StyleGAN3's `update_emas` next to `skip_w_avg_update`.

This file only calls the parts of `torch_utils` and `dnnlib` that the toolkit's own networks file
calls, because its source is stored in every pickle and must run under NVIDIA's `torch_utils`.

Shape letters: N batch, C/I/O channels (any/input/output), H W height width, k kernel size,
Z W latent widths, S number of ws fed to a block, G minibatch-std group size, F std features.
"""

import itertools
import weakref

import numpy as np
import torch

from .torch_utils import misc, persistence
from .torch_utils.ops import bias_act, conv2d_resample, fma, upfirdn2d
from . import dnnlib

#----------------------------------------------------------------------------
# Helpers shared by the layers.

@misc.profiled_function
def normalize_2nd_moment(x, dim=1, eps=1e-8):
    # Scale each vector along `dim` to unit root-mean-square.
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()

def _use_fp32(force_fp32, ref):
    # force_fp32=None picks fp32 whenever the data is not on a CUDA device (half convs on CPU are
    # slow and lose precision); True/False are honoured as given.
    if force_fp32 is None:
        return ref.device.type != 'cuda'
    return bool(force_fp32)

def _scaled_clamp(conv_clamp, gain):
    return conv_clamp * gain if conv_clamp is not None else None

#----------------------------------------------------------------------------
# Modulated convolution (StyleGAN2 paper, section 2.2, equations 1-3).

@misc.profiled_function
def modulated_conv2d(
    x,                          # Input features [NIHW].
    weight,                     # Shared kernel [OIkk].
    styles,                     # Per-sample scale of each input channel [NI].
    noise           = None,     # Added after the convolution, broadcastable to [NOHW].
    up              = 1,        # Upsampling factor (zero insertion + FIR filter).
    down            = 1,        # Downsampling factor (FIR filter + decimation).
    padding         = 0,        # Padding of the convolution itself.
    resample_filter = None,     # FIR filter for up/down, from upfirdn2d.setup_filter().
    demodulate      = True,     # Normalise each output channel to unit expected variance?
    flip_weight     = True,     # False = true convolution (what the upsampling layers use).
    fused_modconv   = True,     # One grouped conv with per-sample kernels, or scale x before and after?
):
    N = x.shape[0]
    O, I, kh, kw = weight.shape
    misc.assert_shape(weight, [O, I, kh, kw])
    misc.assert_shape(x, [N, I, None, None])
    misc.assert_shape(styles, [N, I])

    # Half-precision guard: bring weight and styles to unit-ish magnitude first. The factors
    # cancel out in the demodulation, and the products below can no longer overflow fp16.
    if x.dtype == torch.float16 and demodulate:
        weight = weight * (1 / np.sqrt(I * kh * kw) / weight.abs().amax(dim=[1, 2, 3], keepdim=True))
        styles = styles / styles.abs().amax(dim=1, keepdim=True)

    # Per-sample kernels and demodulation coefficients.
    w = None
    dcoefs = None
    if demodulate or fused_modconv:
        w = weight.unsqueeze(0) * styles.reshape(N, 1, I, 1, 1)            # [NOIkk]
    if demodulate:
        dcoefs = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()             # [NO]

    if not fused_modconv:
        return _modconv_by_scaling(x, weight, styles, dcoefs, noise, up, down, padding, resample_filter, flip_weight)

    if demodulate:
        w = w * dcoefs.reshape(N, O, 1, 1, 1)                               # [NOIkk]
    with misc.suppress_tracer_warnings():
        N = int(N)
    x = x.reshape(1, N * I, *x.shape[2:])                                   # [1,(N*I),H,W]
    w = w.reshape(N * O, I, kh, kw)                                         # [(N*O),I,k,k]
    x = conv2d_resample.conv2d_resample(x=x, w=w.to(x.dtype), f=resample_filter, up=up, down=down,
        padding=padding, groups=N, flip_weight=flip_weight)
    x = x.reshape(N, O, *x.shape[2:])                                       # [NOHW]
    if noise is not None:
        x = x.add_(noise)
    return x

def _modconv_by_scaling(x, weight, styles, dcoefs, noise, up, down, padding, resample_filter, flip_weight):
    # Non-fused path: scale the input channels, run the shared kernel, scale the output channels.
    N = x.shape[0]
    x = x * styles.to(x.dtype).reshape(N, -1, 1, 1)
    x = conv2d_resample.conv2d_resample(x=x, w=weight.to(x.dtype), f=resample_filter, up=up, down=down,
        padding=padding, flip_weight=flip_weight)
    if dcoefs is not None:
        dcoefs = dcoefs.to(x.dtype).reshape(N, -1, 1, 1)
        if noise is not None:
            return fma.fma(x, dcoefs, noise.to(x.dtype))
        return x * dcoefs
    if noise is not None:
        return x.add_(noise.to(x.dtype))
    return x

#----------------------------------------------------------------------------

@persistence.persistent_class
class FullyConnectedLayer(torch.nn.Module):
    def __init__(self,
        in_features,                    # Width of the input vectors.
        out_features,                   # Width of the output vectors.
        bias            = True,         # Learn an additive bias?
        activation      = 'linear',     # Nonlinearity name from bias_act.activation_funcs.
        lr_multiplier   = 1,            # Equalized learning rate: runtime scale of weight and bias.
        bias_init       = 0,            # Starting value of every bias entry.
    ):
        super().__init__()
        self.activation = activation
        self.weight = torch.nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = torch.nn.Parameter(torch.full([out_features], np.float32(bias_init))) if bias else None
        self.weight_gain = float(lr_multiplier / np.sqrt(in_features))
        self.bias_gain = lr_multiplier

    def forward(self, x):
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias
        if b is not None:
            b = b.to(x.dtype)
            if self.bias_gain != 1:
                b = b * self.bias_gain
        if self.activation == 'linear' and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        x = x.matmul(w.t())
        return bias_act.bias_act(x, b, act=self.activation)

    def extra_repr(self):
        return f'in_features={self.weight.shape[1]}, out_features={self.weight.shape[0]}, activation={self.activation}'

#----------------------------------------------------------------------------

@persistence.persistent_class
class Conv2dLayer(torch.nn.Module):
    def __init__(self,
        in_channels,                    # Channels of the input.
        out_channels,                   # Channels of the output.
        kernel_size,                    # Square kernel width.
        bias            = True,         # Learn an additive bias?
        activation      = 'linear',     # Nonlinearity name from bias_act.activation_funcs.
        up              = 1,            # Upsampling factor (then a true convolution).
        down            = 1,            # Downsampling factor.
        resample_filter = [1,3,3,1],    # 1-D FIR taps for up/down; the 2-D filter is their outer product.
        conv_clamp      = None,         # Clamp pre-activation outputs to +-this value (None = off).
        channels_last   = False,        # Keep the weight in NHWC memory format?
        trainable       = True,         # False stores weight and bias as buffers (frozen D layers).
    ):
        super().__init__()
        self.activation = activation
        self.up = up
        self.down = down
        self.conv_clamp = conv_clamp
        self.register_buffer('resample_filter', upfirdn2d.setup_filter(resample_filter))
        self.padding = kernel_size // 2
        self.weight_gain = float(1 / np.sqrt(in_channels * (kernel_size ** 2)))
        self.act_gain = float(bias_act.activation_funcs[activation].def_gain)

        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        weight = torch.randn([out_channels, in_channels, kernel_size, kernel_size]).to(memory_format=memory_format)
        bias = torch.zeros([out_channels]) if bias else None
        if trainable:
            self.weight = torch.nn.Parameter(weight)
            self.bias = torch.nn.Parameter(bias) if bias is not None else None
        else:
            self.register_buffer('weight', weight)
            if bias is not None:
                self.register_buffer('bias', bias)
            else:
                self.bias = None

    def forward(self, x, gain=1):
        w = self.weight * self.weight_gain
        b = self.bias.to(x.dtype) if self.bias is not None else None
        x = conv2d_resample.conv2d_resample(x=x, w=w.to(x.dtype), f=self.resample_filter, up=self.up,
            down=self.down, padding=self.padding, flip_weight=(self.up == 1))
        return bias_act.bias_act(x, b, act=self.activation, gain=self.act_gain * gain,
            clamp=_scaled_clamp(self.conv_clamp, gain))

    def extra_repr(self):
        O, I, k, _ = self.weight.shape
        return f'in_channels={I}, out_channels={O}, kernel_size={k}, activation={self.activation}, up={self.up}, down={self.down}'

#----------------------------------------------------------------------------

@persistence.persistent_class
class MappingNetwork(torch.nn.Module):
    def __init__(self,
        z_dim,                          # Width of z; 0 = no latent input (the conditional D's label mapping).
        c_dim,                          # Width of the label c; 0 = unconditional.
        w_dim,                          # Width of w.
        num_ws,                         # How many copies of w to output; None = return [NW] without broadcasting.
        num_layers      = 8,            # Fully connected layers after the input.
        embed_features  = None,         # Label embedding width; None = w_dim.
        layer_features  = None,         # Hidden width; None = w_dim.
        activation      = 'lrelu',      # Nonlinearity of the hidden layers.
        lr_multiplier   = 0.01,         # Learning-rate multiplier of the hidden layers.
        w_avg_beta      = 0.995,        # Decay of the running mean of w (truncation centre); None = no tracking.
    ):
        super().__init__()
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.num_ws = num_ws
        self.num_layers = num_layers
        self.w_avg_beta = w_avg_beta

        if embed_features is None:
            embed_features = w_dim
        if c_dim == 0:
            embed_features = 0
        if layer_features is None:
            layer_features = w_dim
        features = [z_dim + embed_features] + [layer_features] * (num_layers - 1) + [w_dim]

        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed_features)
        for idx in range(num_layers):
            layer = FullyConnectedLayer(features[idx], features[idx + 1], activation=activation, lr_multiplier=lr_multiplier)
            setattr(self, f'fc{idx}', layer)
        if num_ws is not None and w_avg_beta is not None:
            self.register_buffer('w_avg', torch.zeros([w_dim]))

    def forward(self, z, c, truncation_psi=1, truncation_cutoff=None, skip_w_avg_update=False, update_emas=None):
        # w_avg tracking: the toolkit's rule is "in training mode unless skip_w_avg_update";
        # StyleGAN3 code says `update_emas=True/False` instead, which then decides alone.
        x = self._embed_inputs(z, c)
        for idx in range(self.num_layers):
            x = getattr(self, f'fc{idx}')(x)                                # [NW]

        track = self.training if update_emas is None else bool(update_emas)
        if track and not skip_w_avg_update and self.w_avg_beta is not None and 'w_avg' in self._buffers:
            batch_mean = x.detach().mean(dim=0)
            self.w_avg.copy_(batch_mean + self.w_avg_beta * (self.w_avg - batch_mean))

        if self.num_ws is not None:
            x = x.unsqueeze(1).repeat([1, self.num_ws, 1])                  # [NSW]
        if truncation_psi != 1:
            x = self._truncate(x, truncation_psi, truncation_cutoff)
        return x

    def _embed_inputs(self, z, c):
        x = None
        if self.z_dim > 0:
            misc.assert_shape(z, [None, self.z_dim])
            x = normalize_2nd_moment(z.to(torch.float32))
        if self.c_dim > 0:
            misc.assert_shape(c, [None, self.c_dim])
            y = normalize_2nd_moment(self.embed(c.to(torch.float32)))
            x = torch.cat([x, y], dim=1) if x is not None else y
        return x

    def _truncate(self, x, psi, cutoff):
        if 'w_avg' not in self._buffers:
            raise ValueError('truncation_psi != 1 needs w_avg, which this mapping network does not track')
        w_avg = self.w_avg
        if self.num_ws is None or cutoff is None:
            return w_avg + psi * (x - w_avg)
        x = x.clone()
        x[:, :cutoff] = w_avg + psi * (x[:, :cutoff] - w_avg)
        return x

    def extra_repr(self):
        return f'z_dim={self.z_dim}, c_dim={self.c_dim}, w_dim={self.w_dim}, num_ws={self.num_ws}'

#----------------------------------------------------------------------------

@persistence.persistent_class
class SynthesisLayer(torch.nn.Module):
    def __init__(self,
        in_channels,                    # Channels of the input.
        out_channels,                   # Channels of the output.
        w_dim,                          # Width of w.
        resolution,                     # Output resolution.
        kernel_size     = 3,            # Square kernel width.
        up              = 1,            # Upsampling factor (2 for the first conv of a block).
        use_noise       = True,         # Add per-pixel noise scaled by a learned strength?
        activation      = 'lrelu',      # Nonlinearity name from bias_act.activation_funcs.
        resample_filter = [1,3,3,1],    # 1-D FIR taps for upsampling.
        conv_clamp      = None,         # Clamp pre-activation outputs to +-this value (None = off).
        channels_last   = False,        # Keep the weight in NHWC memory format?
    ):
        super().__init__()
        self.resolution = resolution
        self.up = up
        self.use_noise = use_noise
        self.activation = activation
        self.conv_clamp = conv_clamp
        self.register_buffer('resample_filter', upfirdn2d.setup_filter(resample_filter))
        self.padding = kernel_size // 2
        self.act_gain = float(bias_act.activation_funcs[activation].def_gain)

        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.weight = torch.nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]).to(memory_format=memory_format))
        if use_noise:
            self.register_buffer('noise_const', torch.randn([resolution, resolution]))
            self.noise_strength = torch.nn.Parameter(torch.zeros([]))
        self.bias = torch.nn.Parameter(torch.zeros([out_channels]))

    def forward(self, x, w, noise_mode='random', fused_modconv=True, gain=1):
        if noise_mode not in ('random', 'const', 'none'):
            raise ValueError(f"noise_mode must be 'random', 'const' or 'none', got {noise_mode!r}")
        in_resolution = self.resolution // self.up
        misc.assert_shape(x, [None, self.weight.shape[1], in_resolution, in_resolution])
        styles = self.affine(w)                                             # [NI]

        noise = None
        if self.use_noise and noise_mode == 'random':
            noise = torch.randn([x.shape[0], 1, self.resolution, self.resolution], device=x.device) * self.noise_strength
        if self.use_noise and noise_mode == 'const':
            noise = self.noise_const * self.noise_strength

        x = modulated_conv2d(x=x, weight=self.weight, styles=styles, noise=noise, up=self.up, padding=self.padding,
            resample_filter=self.resample_filter, flip_weight=(self.up == 1), fused_modconv=fused_modconv)
        return bias_act.bias_act(x, self.bias.to(x.dtype), act=self.activation, gain=self.act_gain * gain,
            clamp=_scaled_clamp(self.conv_clamp, gain))

    def extra_repr(self):
        O, I, k, _ = self.weight.shape
        return f'in_channels={I}, out_channels={O}, resolution={self.resolution}, up={self.up}, activation={self.activation}'

#----------------------------------------------------------------------------

@persistence.persistent_class
class ToRGBLayer(torch.nn.Module):
    def __init__(self,
        in_channels,                    # Channels of the input features.
        out_channels,                   # Image channels.
        w_dim,                          # Width of w.
        kernel_size     = 1,            # Square kernel width.
        conv_clamp      = None,         # Clamp outputs to +-this value (None = off).
        channels_last   = False,        # Keep the weight in NHWC memory format?
    ):
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.weight = torch.nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]).to(memory_format=memory_format))
        self.bias = torch.nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = float(1 / np.sqrt(in_channels * (kernel_size ** 2)))

    def forward(self, x, w, fused_modconv=True):
        # No demodulation here; the equalized-lr gain is folded into the styles instead.
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x=x, weight=self.weight, styles=styles, demodulate=False, fused_modconv=fused_modconv)
        return bias_act.bias_act(x, self.bias.to(x.dtype), clamp=self.conv_clamp)

    def extra_repr(self):
        return f'in_channels={self.weight.shape[1]}, out_channels={self.weight.shape[0]}'

#----------------------------------------------------------------------------

@persistence.persistent_class
class SynthesisBlock(torch.nn.Module):
    def __init__(self,
        in_channels,                        # Channels of the previous block; 0 = first block (learned constant).
        out_channels,                       # Channels of this block.
        w_dim,                              # Width of w.
        resolution,                         # Resolution of this block.
        img_channels,                       # Image channels.
        is_last,                            # Last block (always gets a ToRGB)?
        architecture        = 'skip',       # 'orig', 'skip' or 'resnet'.
        resample_filter     = [1,3,3,1],    # 1-D FIR taps for upsampling x and img.
        conv_clamp          = None,         # Clamp pre-activation outputs to +-this value (None = off).
        use_fp16            = False,        # Run this block in half precision?
        fp16_channels_last  = False,        # With fp16, use NHWC memory format?
        **layer_kwargs,                     # Passed on to both SynthesisLayers.
    ):
        assert architecture in ['orig', 'skip', 'resnet']
        super().__init__()
        self.in_channels = in_channels
        self.w_dim = w_dim
        self.resolution = resolution
        self.img_channels = img_channels
        self.is_last = is_last
        self.architecture = architecture
        self.use_fp16 = use_fp16
        self.channels_last = (use_fp16 and fp16_channels_last)
        self.register_buffer('resample_filter', upfirdn2d.setup_filter(resample_filter))
        self.num_conv = 0
        self.num_torgb = 0

        if in_channels == 0:
            self.const = torch.nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim=w_dim, resolution=resolution, up=2,
                resample_filter=resample_filter, conv_clamp=conv_clamp, channels_last=self.channels_last, **layer_kwargs)
            self.num_conv += 1
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim=w_dim, resolution=resolution,
            conv_clamp=conv_clamp, channels_last=self.channels_last, **layer_kwargs)
        self.num_conv += 1
        if is_last or architecture == 'skip':
            self.torgb = ToRGBLayer(out_channels, img_channels, w_dim=w_dim, conv_clamp=conv_clamp, channels_last=self.channels_last)
            self.num_torgb += 1
        if in_channels != 0 and architecture == 'resnet':
            self.skip = Conv2dLayer(in_channels, out_channels, kernel_size=1, bias=False, up=2,
                resample_filter=resample_filter, channels_last=self.channels_last)

    def forward(self, x, img, ws, force_fp32=None, fused_modconv=None, update_emas=False, **layer_kwargs):
        misc.assert_shape(ws, [None, self.num_conv + self.num_torgb, self.w_dim])
        w_iter = iter(ws.unbind(dim=1))
        fp16 = self.use_fp16 and not _use_fp32(force_fp32, ws)
        dtype = torch.float16 if fp16 else torch.float32
        memory_format = torch.channels_last if (self.channels_last and fp16) else torch.contiguous_format
        if fused_modconv is None:
            with misc.suppress_tracer_warnings():
                fused_modconv = (not self.training) and (dtype == torch.float32 or int(ws.shape[0]) == 1)

        # Input features.
        if self.in_channels == 0:
            x = self.const.to(dtype=dtype).unsqueeze(0).repeat([ws.shape[0], 1, 1, 1])
            x = x.to(memory_format=memory_format)
        else:
            misc.assert_shape(x, [None, self.in_channels, self.resolution // 2, self.resolution // 2])
            x = x.to(dtype=dtype, memory_format=memory_format)

        # Main layers.
        if self.in_channels == 0:
            x = self.conv1(x, next(w_iter), fused_modconv=fused_modconv, **layer_kwargs)
        elif self.architecture == 'resnet':
            y = self.skip(x, gain=np.sqrt(0.5))
            x = self.conv0(x, next(w_iter), fused_modconv=fused_modconv, **layer_kwargs)
            x = self.conv1(x, next(w_iter), fused_modconv=fused_modconv, gain=np.sqrt(0.5), **layer_kwargs)
            x = y.add_(x)
        else:
            x = self.conv0(x, next(w_iter), fused_modconv=fused_modconv, **layer_kwargs)
            x = self.conv1(x, next(w_iter), fused_modconv=fused_modconv, **layer_kwargs)

        # Image path: upsample the running image and add this block's RGB contribution.
        if img is not None:
            misc.assert_shape(img, [None, self.img_channels, self.resolution // 2, self.resolution // 2])
            img = upfirdn2d.upsample2d(img, self.resample_filter)
        if self.is_last or self.architecture == 'skip':
            y = self.torgb(x, next(w_iter), fused_modconv=fused_modconv)
            y = y.to(dtype=torch.float32, memory_format=torch.contiguous_format)
            img = img.add_(y) if img is not None else y

        assert x.dtype == dtype
        assert img is None or img.dtype == torch.float32
        return x, img

    def extra_repr(self):
        return f'resolution={self.resolution}, architecture={self.architecture}, use_fp16={self.use_fp16}'

#----------------------------------------------------------------------------
# Feature injection, host side (the public description is in stylegan2_ada_pytorch/injection.py).
# Transient injectors are kept in a plain attribute that never reaches a pickle or a deep copy.

_TRANSIENT_ATTR = '_transient_injectors'
_handle_ids = itertools.count()

class InjectorHandle:
    """Returned by `SynthesisNetwork.register_injector`; `remove()` detaches the injector.

    Also a context manager: the injector is detached when the `with` block ends.
    """

    def __init__(self, network, stage, handle_id):
        self._network = weakref.ref(network)
        self.stage = stage
        self.id = handle_id

    def remove(self):
        """Detach the injector (calling it again does nothing)."""
        network = self._network()
        if network is not None:
            network._remove_transient_injector(self.stage, self.id)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.remove()

def _stage_of(res):
    return f'b{res}'

def _describe(value):
    if isinstance(value, torch.Tensor):
        return f'{list(value.shape)} {str(value.dtype).replace("torch.", "")}'
    return 'None' if value is None else type(value).__name__

def _check_injector_output(label, stage, x, img, out):
    # An injector must hand back (x, img) with the shapes and dtypes it was given.
    if not (isinstance(out, (tuple, list)) and len(out) == 2):
        raise TypeError(f'injector {label} at stage {stage} must return a pair (x, img), got {type(out).__name__}')
    for name, before, after in (('x', x, out[0]), ('img', img, out[1])):
        same = (before is None and after is None) or (before is not None and isinstance(after, torch.Tensor)
            and after.shape == before.shape and after.dtype == before.dtype)
        if not same:
            raise RuntimeError(f'injector {label} at stage {stage} changed {name} from {_describe(before)} to '
                f'{_describe(after)}; injectors must return x and img with the shapes and dtypes they were given')

def _run_injectors(stage, chain, x, img, ws, inject_kwargs):
    # The injectors of one stage run as a fold: each receives the previous one's (x, img).
    for label, injector in chain:
        out = injector(x, img, stage=stage, ws=ws, **inject_kwargs)
        _check_injector_output(label, stage, x, img, out)
        x, img = out
    return x, img

#----------------------------------------------------------------------------

@persistence.persistent_class
class SynthesisNetwork(torch.nn.Module):
    def __init__(self,
        w_dim,                      # Width of w.
        img_resolution,             # Output resolution (a power of two >= 4).
        img_channels,               # Image channels.
        channel_base    = 32768,    # Channels at resolution r: min(channel_base // r, channel_max).
        channel_max     = 512,      # Upper bound of the channel count.
        num_fp16_res    = 0,        # How many of the highest resolutions run in fp16.
        injector_kwargs = None,     # {stage: [EasyDict(class_name=..., **kwargs), ...]}: persistent injectors.
        **block_kwargs,             # Passed on to every SynthesisBlock.
    ):
        assert img_resolution >= 4 and img_resolution & (img_resolution - 1) == 0
        super().__init__()
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_resolution_log2 = int(np.log2(img_resolution))
        self.img_channels = img_channels
        self.block_resolutions = [2 ** i for i in range(2, self.img_resolution_log2 + 1)]
        channels_dict = {res: min(channel_base // res, channel_max) for res in self.block_resolutions}
        fp16_resolution = max(2 ** (self.img_resolution_log2 + 1 - num_fp16_res), 8)

        self.num_ws = 0
        for res in self.block_resolutions:
            in_channels = channels_dict[res // 2] if res > 4 else 0
            is_last = (res == self.img_resolution)
            block = SynthesisBlock(in_channels, channels_dict[res], w_dim=w_dim, resolution=res,
                img_channels=img_channels, is_last=is_last, use_fp16=(res >= fp16_resolution), **block_kwargs)
            self.num_ws += block.num_conv
            if is_last:
                self.num_ws += block.num_torgb
            setattr(self, _stage_of(res), block)

        if injector_kwargs:
            self._build_injectors(injector_kwargs)

    def _build_injectors(self, injector_kwargs):
        if not isinstance(injector_kwargs, dict):
            raise TypeError(f'injector_kwargs must be a dict {{stage: [EasyDict(class_name=...), ...]}}, got {type(injector_kwargs).__name__}')
        for stage in injector_kwargs:
            self._check_stage(stage, 'injector_kwargs')
        modules = torch.nn.ModuleDict()
        for stage in self.stages:
            if stage not in injector_kwargs:
                continue
            specs = injector_kwargs[stage]
            if not isinstance(specs, (list, tuple)):
                raise TypeError(f'injector_kwargs[{stage!r}] must be a list of EasyDict(class_name=..., ...), got {type(specs).__name__}')
            modules[stage] = torch.nn.ModuleList([self._construct_injector(stage, idx, spec) for idx, spec in enumerate(specs)])
        self.injectors = modules

    def _construct_injector(self, stage, idx, spec):
        where = f'injector_kwargs[{stage!r}][{idx}]'
        if not isinstance(spec, dict) or not spec.get('class_name'):
            raise TypeError(f'{where} must be a dict with a class_name, got {spec!r}')
        cls = dnnlib.util.get_obj_by_name(spec['class_name'])
        if isinstance(cls, type) and not persistence.is_persistent(cls):
            raise TypeError(f'{where}: {spec["class_name"]} is not a persistent class; add the decorator '
                f'@persistence.persistent_class (from stylegan2_ada_pytorch.torch_utils import persistence) above '
                f'"class {cls.__name__}" so that network pickles can hold it')
        injector = cls(**{key: value for key, value in spec.items() if key != 'class_name'})
        if not isinstance(injector, torch.nn.Module):
            raise TypeError(f'{where}: {spec["class_name"]} built a {type(injector).__name__}, not a torch.nn.Module')
        return injector

    def _check_stage(self, stage, where):
        if stage not in self.stages:
            raise ValueError(f'{where}: unknown stage {stage!r}; valid stages for img_resolution={self.img_resolution} '
                f'are {", ".join(self.stages)}')

    @property
    def stages(self):
        """Names of the injection points, coarse to fine: ['b4', 'b8', ..., 'b<img_resolution>']."""
        return [_stage_of(res) for res in self.block_resolutions]

    @property
    def stage_channels(self):
        """{stage: channels of x after that block}."""
        return {_stage_of(res): getattr(self, _stage_of(res)).conv1.weight.shape[0] for res in self.block_resolutions}

    def register_injector(self, stage, module, *, prepend=False):
        """Run `module` after block `stage` until the returned handle is removed (not saved, not copied)."""
        self._check_stage(stage, 'register_injector')
        if not isinstance(module, torch.nn.Module):
            raise TypeError(f'register_injector: the injector must be a torch.nn.Module, got {type(module).__name__}')
        table = self.__dict__.get(_TRANSIENT_ATTR)
        if table is None:
            table = {}
            self.__dict__[_TRANSIENT_ATTR] = table
        slot = table.setdefault(stage, dict(prepend={}, append={}))
        handle_id = next(_handle_ids)
        slot['prepend' if prepend else 'append'][handle_id] = module
        return InjectorHandle(self, stage, handle_id)

    def _remove_transient_injector(self, stage, handle_id):
        table = self.__dict__.get(_TRANSIENT_ATTR)
        if not table or stage not in table:
            return
        slot = table[stage]
        slot['prepend'].pop(handle_id, None)
        slot['append'].pop(handle_id, None)
        if not slot['prepend'] and not slot['append']:
            del table[stage]
        if not table:
            del self.__dict__[_TRANSIENT_ATTR]

    def has_transient_injectors(self):
        """True while an injector registered with register_injector() is attached."""
        return bool(self.__dict__.get(_TRANSIENT_ATTR))

    def injector_chain(self, stage):
        """[(label, module), ...] in call order: prepended transients (latest first), persistent, appended."""
        chain = []
        slot = self.__dict__.get(_TRANSIENT_ATTR, {}).get(stage)
        if slot:
            chain += [(f'transient #{hid} ({type(m).__name__})', m) for hid, m in reversed(slot['prepend'].items())]
        persistent = self._modules.get('injectors')
        if persistent is not None and stage in persistent:
            chain += [(f'injectors.{stage}.{idx} ({type(m).__name__})', m) for idx, m in enumerate(persistent[stage])]
        if slot:
            chain += [(f'transient #{hid} ({type(m).__name__})', m) for hid, m in slot['append'].items()]
        return chain

    def _injector_plan(self):
        # None when nothing is registered: the forward then skips injection entirely.
        if 'injectors' not in self._modules and _TRANSIENT_ATTR not in self.__dict__:
            return None
        return {stage: chain for stage in self.stages for chain in [self.injector_chain(stage)] if chain}

    def __getstate__(self):
        # A copy of __dict__ without the transient injectors (older torch has no Module.__getstate__).
        parent = getattr(super(), '__getstate__', None)
        state = dict(parent() if parent is not None else self.__dict__)
        state.pop(_TRANSIENT_ATTR, None)
        return state

    def forward(self, ws, inject_kwargs=None, update_emas=False, **block_kwargs):
        misc.assert_shape(ws, [None, self.num_ws, self.w_dim])
        ws = ws.to(torch.float32)
        plan = self._injector_plan()
        if plan is not None:
            inject_kwargs = _check_inject_kwargs(inject_kwargs)

        x = img = None
        w_idx = 0
        for res in self.block_resolutions:
            block = getattr(self, _stage_of(res))
            cur_ws = ws.narrow(1, w_idx, block.num_conv + block.num_torgb)         # [NSW]
            w_idx += block.num_conv
            x, img = block(x, img, cur_ws, **block_kwargs)
            if plan is not None and _stage_of(res) in plan:
                x, img = _run_injectors(_stage_of(res), plan[_stage_of(res)], x, img, cur_ws, inject_kwargs)
        return img

    def extra_repr(self):
        return f'w_dim={self.w_dim}, num_ws={self.num_ws}, img_resolution={self.img_resolution}, img_channels={self.img_channels}'

def _check_inject_kwargs(inject_kwargs):
    if inject_kwargs is None:
        return {}
    if not isinstance(inject_kwargs, dict):
        raise TypeError(f'inject_kwargs must be a dict, got {type(inject_kwargs).__name__}')
    reserved = sorted({'stage', 'ws'} & set(inject_kwargs))
    if reserved:
        raise ValueError(f'inject_kwargs must not contain {", ".join(reserved)} (the host passes them)')
    return inject_kwargs

#----------------------------------------------------------------------------

@persistence.persistent_class
class Generator(torch.nn.Module):
    def __init__(self,
        z_dim,                      # Width of z.
        c_dim,                      # Width of the label c; 0 = unconditional.
        w_dim,                      # Width of w.
        img_resolution,             # Output resolution.
        img_channels,               # Image channels.
        mapping_kwargs      = {},   # Arguments for MappingNetwork.
        synthesis_kwargs    = {},   # Arguments for SynthesisNetwork (incl. injector_kwargs).
    ):
        super().__init__()
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.synthesis = SynthesisNetwork(w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels, **synthesis_kwargs)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=self.num_ws, **mapping_kwargs)

    def forward(self, z, c, truncation_psi=1, truncation_cutoff=None, skip_w_avg_update=False, update_emas=None, **synthesis_kwargs):
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
            skip_w_avg_update=skip_w_avg_update, update_emas=update_emas)
        return self.synthesis(ws, **synthesis_kwargs)

#----------------------------------------------------------------------------

@persistence.persistent_class
class DiscriminatorBlock(torch.nn.Module):
    def __init__(self,
        in_channels,                        # Channels of the previous block; 0 = first block (reads the image).
        tmp_channels,                       # Channels inside the block.
        out_channels,                       # Channels of the output.
        resolution,                         # Resolution of this block (input side).
        img_channels,                       # Image channels.
        first_layer_idx,                    # Index of this block's first layer in D (for freezing).
        architecture        = 'resnet',     # 'orig', 'skip' or 'resnet'.
        activation          = 'lrelu',      # Nonlinearity name from bias_act.activation_funcs.
        resample_filter     = [1,3,3,1],    # 1-D FIR taps for downsampling.
        conv_clamp          = None,         # Clamp pre-activation outputs to +-this value (None = off).
        use_fp16            = False,        # Run this block in half precision?
        fp16_channels_last  = False,        # With fp16, use NHWC memory format?
        freeze_layers       = 0,            # Layers with a global index below this are frozen (buffers).
    ):
        assert in_channels in [0, tmp_channels]
        assert architecture in ['orig', 'skip', 'resnet']
        super().__init__()
        self.in_channels = in_channels
        self.resolution = resolution
        self.img_channels = img_channels
        self.first_layer_idx = first_layer_idx
        self.architecture = architecture
        self.use_fp16 = use_fp16
        self.channels_last = (use_fp16 and fp16_channels_last)
        self.register_buffer('resample_filter', upfirdn2d.setup_filter(resample_filter))
        self.num_layers = 0

        def trainable():
            # Called once per layer, in creation order.
            idx = self.first_layer_idx + self.num_layers
            self.num_layers += 1
            return idx >= freeze_layers

        if in_channels == 0 or architecture == 'skip':
            self.fromrgb = Conv2dLayer(img_channels, tmp_channels, kernel_size=1, activation=activation,
                trainable=trainable(), conv_clamp=conv_clamp, channels_last=self.channels_last)
        self.conv0 = Conv2dLayer(tmp_channels, tmp_channels, kernel_size=3, activation=activation,
            trainable=trainable(), conv_clamp=conv_clamp, channels_last=self.channels_last)
        self.conv1 = Conv2dLayer(tmp_channels, out_channels, kernel_size=3, activation=activation, down=2,
            trainable=trainable(), resample_filter=resample_filter, conv_clamp=conv_clamp, channels_last=self.channels_last)
        if architecture == 'resnet':
            self.skip = Conv2dLayer(tmp_channels, out_channels, kernel_size=1, bias=False, down=2,
                trainable=trainable(), resample_filter=resample_filter, channels_last=self.channels_last)

    def forward(self, x, img, force_fp32=None):
        ref = img if x is None else x
        fp16 = self.use_fp16 and not _use_fp32(force_fp32, ref)
        dtype = torch.float16 if fp16 else torch.float32
        memory_format = torch.channels_last if (self.channels_last and fp16) else torch.contiguous_format

        if x is not None:
            misc.assert_shape(x, [None, self.in_channels, self.resolution, self.resolution])
            x = x.to(dtype=dtype, memory_format=memory_format)
        if self.in_channels == 0 or self.architecture == 'skip':
            misc.assert_shape(img, [None, self.img_channels, self.resolution, self.resolution])
            img = img.to(dtype=dtype, memory_format=memory_format)
            y = self.fromrgb(img)
            x = x + y if x is not None else y
            img = upfirdn2d.downsample2d(img, self.resample_filter) if self.architecture == 'skip' else None

        if self.architecture == 'resnet':
            y = self.skip(x, gain=np.sqrt(0.5))
            x = self.conv0(x)
            x = self.conv1(x, gain=np.sqrt(0.5))
            x = y.add_(x)
        else:
            x = self.conv0(x)
            x = self.conv1(x)

        assert x.dtype == dtype
        return x, img

    def extra_repr(self):
        return f'resolution={self.resolution}, architecture={self.architecture}, use_fp16={self.use_fp16}'

#----------------------------------------------------------------------------

@persistence.persistent_class
class MinibatchStdLayer(torch.nn.Module):
    def __init__(self,
        group_size,                 # Samples per group; None = the whole minibatch.
        num_channels    = 1,        # Feature maps appended (channels are split into this many groups).
    ):
        super().__init__()
        self.group_size = group_size
        self.num_channels = num_channels

    def forward(self, x):
        N, C, H, W = x.shape
        with misc.suppress_tracer_warnings():
            N = int(N)
        G = min(self.group_size, N) if self.group_size is not None else N
        F = self.num_channels
        if N % G != 0:
            raise ValueError(f'MinibatchStdLayer: batch size {N} is not divisible by the group size {G}')
        # Group members are N/G apart: sample k belongs to group k mod (N/G).
        y = x.reshape(G, N // G, F, C // F, H, W)                          # [G,n,F,c,H,W]
        y = y - y.mean(dim=0)
        y = (y.square().mean(dim=0) + 1e-8).sqrt()                          # [n,F,c,H,W]
        y = y.mean(dim=[2, 3, 4])                                           # [nF]
        y = y.reshape(N // G, F, 1, 1).repeat(G, 1, H, W)                   # [NFHW]
        return torch.cat([x, y], dim=1)

    def extra_repr(self):
        return f'group_size={self.group_size}, num_channels={self.num_channels}'

#----------------------------------------------------------------------------

@persistence.persistent_class
class DiscriminatorEpilogue(torch.nn.Module):
    def __init__(self,
        in_channels,                    # Channels of the input.
        cmap_dim,                       # Width of the label projection; 0 = unconditional.
        resolution,                     # Resolution of the input (4).
        img_channels,                   # Image channels.
        architecture        = 'resnet', # 'orig', 'skip' or 'resnet'.
        mbstd_group_size    = 4,        # Minibatch-std group size; None = whole minibatch.
        mbstd_num_channels  = 1,        # Minibatch-std features; 0 = no minibatch-std layer.
        activation          = 'lrelu',  # Nonlinearity name from bias_act.activation_funcs.
        conv_clamp          = None,     # Clamp pre-activation outputs to +-this value (None = off).
    ):
        assert architecture in ['orig', 'skip', 'resnet']
        super().__init__()
        self.in_channels = in_channels
        self.cmap_dim = cmap_dim
        self.resolution = resolution
        self.img_channels = img_channels
        self.architecture = architecture

        if architecture == 'skip':
            self.fromrgb = Conv2dLayer(img_channels, in_channels, kernel_size=1, activation=activation)
        self.mbstd = MinibatchStdLayer(group_size=mbstd_group_size, num_channels=mbstd_num_channels) if mbstd_num_channels > 0 else None
        self.conv = Conv2dLayer(in_channels + mbstd_num_channels, in_channels, kernel_size=3, activation=activation, conv_clamp=conv_clamp)
        self.fc = FullyConnectedLayer(in_channels * (resolution ** 2), in_channels, activation=activation)
        self.out = FullyConnectedLayer(in_channels, 1 if cmap_dim == 0 else cmap_dim)

    def forward(self, x, img, cmap, force_fp32=False):
        # Always fp32 and NCHW.
        misc.assert_shape(x, [None, self.in_channels, self.resolution, self.resolution])
        x = x.to(dtype=torch.float32, memory_format=torch.contiguous_format)
        if self.architecture == 'skip':
            misc.assert_shape(img, [None, self.img_channels, self.resolution, self.resolution])
            x = x + self.fromrgb(img.to(dtype=torch.float32, memory_format=torch.contiguous_format))

        if self.mbstd is not None:
            x = self.mbstd(x)
        x = self.conv(x)
        x = self.fc(x.flatten(1))                                           # [NC], NCHW flatten order
        x = self.out(x)                                                     # [N,1] or [N,cmap_dim]

        if self.cmap_dim > 0:
            misc.assert_shape(cmap, [None, self.cmap_dim])
            x = (x * cmap).sum(dim=1, keepdim=True) * (1 / np.sqrt(self.cmap_dim))
        assert x.dtype == torch.float32
        return x

    def extra_repr(self):
        return f'resolution={self.resolution}, architecture={self.architecture}'

#----------------------------------------------------------------------------

@persistence.persistent_class
class Discriminator(torch.nn.Module):
    def __init__(self,
        c_dim,                          # Width of the label c; 0 = unconditional.
        img_resolution,                 # Input resolution.
        img_channels,                   # Image channels.
        architecture        = 'resnet', # 'orig', 'skip' or 'resnet'.
        channel_base        = 32768,    # Channels at resolution r: min(channel_base // r, channel_max).
        channel_max         = 512,      # Upper bound of the channel count.
        num_fp16_res        = 0,        # How many of the highest resolutions run in fp16.
        conv_clamp          = None,     # Clamp pre-activation outputs to +-this value (None = off).
        cmap_dim            = None,     # Label projection width; None = channels at 4x4.
        block_kwargs        = {},       # Arguments for DiscriminatorBlock.
        mapping_kwargs      = {},       # Arguments for the label MappingNetwork.
        epilogue_kwargs     = {},       # Arguments for DiscriminatorEpilogue.
    ):
        super().__init__()
        self.c_dim = c_dim
        self.img_resolution = img_resolution
        self.img_resolution_log2 = int(np.log2(img_resolution))
        self.img_channels = img_channels
        self.block_resolutions = [2 ** i for i in range(self.img_resolution_log2, 2, -1)]
        channels_dict = {res: min(channel_base // res, channel_max) for res in self.block_resolutions + [4]}
        fp16_resolution = max(2 ** (self.img_resolution_log2 + 1 - num_fp16_res), 8)
        if cmap_dim is None:
            cmap_dim = channels_dict[4]
        if c_dim == 0:
            cmap_dim = 0

        common_kwargs = dict(img_channels=img_channels, architecture=architecture, conv_clamp=conv_clamp)
        cur_layer_idx = 0
        for res in self.block_resolutions:
            in_channels = channels_dict[res] if res < img_resolution else 0
            block = DiscriminatorBlock(in_channels, channels_dict[res], channels_dict[res // 2], resolution=res,
                first_layer_idx=cur_layer_idx, use_fp16=(res >= fp16_resolution), **block_kwargs, **common_kwargs)
            setattr(self, f'b{res}', block)
            cur_layer_idx += block.num_layers
        if c_dim > 0:
            self.mapping = MappingNetwork(z_dim=0, c_dim=c_dim, w_dim=cmap_dim, num_ws=None, w_avg_beta=None, **mapping_kwargs)
        self.b4 = DiscriminatorEpilogue(channels_dict[4], cmap_dim=cmap_dim, resolution=4, **epilogue_kwargs, **common_kwargs)

    def forward(self, img, c, update_emas=False, **block_kwargs):
        x = None
        for res in self.block_resolutions:
            x, img = getattr(self, f'b{res}')(x, img, **block_kwargs)
        cmap = self.mapping(None, c) if self.c_dim > 0 else None
        return self.b4(x, img, cmap)

    def extra_repr(self):
        return f'c_dim={self.c_dim}, img_resolution={self.img_resolution}, img_channels={self.img_channels}'

#----------------------------------------------------------------------------
