"""Gradual Residual Module and Gate&Fusion of "Gradual Residuals Alignment: A Dual-Stream Framework
for GAN Inversion and Image Attribute Editing" (GradStyle), section 3.2.

At stage m of the reconstruction stream, the GRM compares the encoder's hierarchical features T_m
with the generator's block output f_m and embeds what the generator failed to reconstruct into a
residual feature map (eq. 2):

    F_m = E_res(W_T T_m, W_f f_m)

Gate&Fusion then decides, per position and channel, how much of it to add at this stage (eq. 3-4):

    g_m = sigmoid(W_g [f_m, F_m]),    f~_m = f_m + g_m * F_m

and g_m * F_m is the term the L1 regulariser L_f of eq. 5 acts on. E_res ends in a zero-initialised
convolution, so a freshly attached GRM returns F_m = 0 and leaves the generator unchanged.

Shape letters: N batch, C channels of the generator at the stage, c channels of T_m, K hidden
channels, H/W the stage resolution.
"""

import torch

from stylegan2_ada_pytorch.torch_utils import misc
from stylegan2_ada_pytorch.torch_utils import persistence

#----------------------------------------------------------------------------

def _conv(in_channels, out_channels, kernel_size=3):
    return torch.nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)

#----------------------------------------------------------------------------

@persistence.persistent_class
class ResidualBlock(torch.nn.Module):
    """x + conv(lrelu(conv(lrelu(x)))): the unit E_res is built from ("ResNet-based")."""

    def __init__(self,
        channels,                   # Number of input and output channels.
        slope       = 0.2,          # Negative slope of the leaky ReLUs.
    ):
        super().__init__()
        self.conv0 = _conv(channels, channels)
        self.conv1 = _conv(channels, channels)
        self.slope = slope

    def forward(self, x):
        y = self.conv0(torch.nn.functional.leaky_relu(x, self.slope))
        y = self.conv1(torch.nn.functional.leaky_relu(y, self.slope))
        return x + y

#----------------------------------------------------------------------------

@persistence.persistent_class
class GradualResidualModule(torch.nn.Module):
    """Eq. 2: F_m = E_res(W_T T_m, W_f f_m) with E_res ending in a zero-initialised conv."""

    def __init__(self,
        channels,                   # C: channels of the generator's block output at this stage.
        feature_channels,           # c: channels of the encoder features T_m (512 for e4e).
        hidden_channels = None,     # K: width of the common space (ours; `paper` preset: K = c); None = min(C, 512).
        num_blocks      = 2,        # Residual blocks in E_res (ours: the paper says "ResNet-based").
        slope           = 0.2,      # Negative slope of the leaky ReLUs.
    ):
        super().__init__()
        self.channels = channels
        self.feature_channels = feature_channels
        hidden = min(channels, 512) if hidden_channels is None else hidden_channels
        self.slope = slope
        self.W_T = _conv(feature_channels, hidden)          # Encoder features -> common space.
        self.W_f = _conv(channels, hidden)                  # Generator features -> common space.
        self.fuse = _conv(hidden * 2, hidden)               # E_res input: both, concatenated.
        self.blocks = torch.nn.Sequential(*[ResidualBlock(hidden, slope) for _ in range(num_blocks)])
        self.out = _conv(hidden, channels)                  # E_res output, zero-initialised.
        torch.nn.init.zeros_(self.out.weight)
        torch.nn.init.zeros_(self.out.bias)

    def forward(self, T, f):
        misc.assert_shape(T, [None, self.feature_channels, None, None])
        misc.assert_shape(f, [T.shape[0], self.channels, None, None])
        T = T.to(torch.float32)
        f = f.to(torch.float32)
        if T.shape[2:] != f.shape[2:]:
            T = torch.nn.functional.interpolate(T, size=f.shape[2:], mode='bilinear', align_corners=False)
        act = lambda t: torch.nn.functional.leaky_relu(t, self.slope)
        h = torch.cat([act(self.W_T(T)), act(self.W_f(f))], dim=1)        # [N, 2K, H, W]
        h = self.blocks(self.fuse(h))                                       # [N, K, H, W]
        return self.out(act(h))                                             # [N, C, H, W]

    def extra_repr(self):
        return f'channels={self.channels:d}, feature_channels={self.feature_channels:d}'

#----------------------------------------------------------------------------

@persistence.persistent_class
class GateFusion(torch.nn.Module):
    """Eq. 3-4: g = sigmoid(W_g [f, F]); returns (f + g * F, g). Shared by GRM and GAM at a stage."""

    def __init__(self,
        channels,                   # C: channels of f and F.
        hidden_channels = None,     # Width of W_g's hidden layer (ours; `paper` preset: c); None = min(C, 256).
        slope           = 0.2,      # Negative slope of the leaky ReLU.
    ):
        super().__init__()
        self.channels = channels
        hidden = min(channels, 256) if hidden_channels is None else hidden_channels
        self.slope = slope
        self.conv0 = _conv(channels * 2, hidden)
        self.conv1 = _conv(hidden, channels)

    def forward(self, f, F, scale=1.0):
        """(f + scale * g * F, g); `scale` is the inference dial of `stage.py` (`gate_scale`), 1 in training."""
        misc.assert_shape(f, [None, self.channels, None, None])
        misc.assert_shape(F, list(f.shape))
        h = torch.nn.functional.leaky_relu(self.conv0(torch.cat([f, F], dim=1)), self.slope)
        g = torch.sigmoid(self.conv1(h))                                    # [N, C, H, W]
        return f + (g * F if scale == 1 else scale * g * F), g

#----------------------------------------------------------------------------
