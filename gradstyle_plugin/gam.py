"""Global Alignment Module of "Gradual Residuals Alignment: A Dual-Stream Framework for GAN
Inversion and Image Attribute Editing" (GradStyle), section 3.3.

In the editing stream, the residual features F_m computed by the reconstruction stream no longer
line up with the edited feature map f_m^edi (a pose edit moves the ear). The Aligner (eq. 7)
re-arranges them by content: both maps are flattened to L = H*W tokens, get a 2-D sinusoidal
positional embedding (Z_F, Z_f), and pass through several Selective Attention layers (eq. 8-9)
whose queries come from the edited features and keys/values from the residuals; per query only the
top mu of the scores enter the softmax (`selective_attention.py`). The aligned residuals F'_m then
go through the stage's Gate&Fusion, whose weights are shared with the GRM (`stage.py`).

Tokens get the positional embedding after a LayerNorm, so content and position weigh alike:
Z_F = LN(F) + PE (keys), Z_f = LN(f_edi) + PE (queries). The first layers refine the query stream
as a pre-norm transformer decoder does (h += SAtt(LN(h), Z_F); h += FFN(LN(h))); the last layer
attends from h to Z_F but takes its VALUES from the raw residual tokens through bias-free
projections that start as the identity. F' is therefore a (selective) weighted average of the
residuals, in their own scale, and F' = 0 whenever F = 0: since the GRM starts at F = 0,
attaching GradStyle changes nothing until it is trained.

Shape letters: N batch, C channels, H/W stage resolution, L = H*W tokens, h heads, d = d_k = 64.
"""

import math

import torch

from stylegan2_ada_pytorch.torch_utils import misc
from stylegan2_ada_pytorch.torch_utils import persistence
from gradstyle_plugin.selective_attention import selective_attention

#----------------------------------------------------------------------------

def sinusoidal_embedding_2d(channels, height, width, device=None, dtype=torch.float32):
    """Fixed 2-D sinusoidal positional embedding [H*W, C] (Vaswani et al. 2017, per axis).

    The first half of the channels encodes the row, the second half the column; within each half,
    pairs (sin, cos) at frequencies 1 / 10000^(2i / (C/2)).
    """
    assert channels % 4 == 0, 'positional embedding needs channels divisible by 4'
    quarter = channels // 4
    freqs = torch.exp(-math.log(10000.0) * torch.arange(quarter, dtype=torch.float64) / quarter)   # [C/4]
    ys = torch.arange(height, dtype=torch.float64)[:, None] * freqs[None, :]                      # [H, C/4]
    xs = torch.arange(width, dtype=torch.float64)[:, None] * freqs[None, :]                       # [W, C/4]
    emb_y = torch.cat([ys.sin(), ys.cos()], dim=1)[:, None, :].expand(height, width, 2 * quarter)
    emb_x = torch.cat([xs.sin(), xs.cos()], dim=1)[None, :, :].expand(height, width, 2 * quarter)
    emb = torch.cat([emb_y, emb_x], dim=2).reshape(height * width, channels)                      # [L, C]
    return emb.to(device=device, dtype=dtype)

def to_tokens(x):
    """[N, C, H, W] -> [N, L, C]."""
    return x.flatten(2).transpose(1, 2)

def from_tokens(t, height, width):
    """[N, L, C] -> [N, C, H, W]."""
    return t.transpose(1, 2).reshape(t.shape[0], t.shape[2], height, width)

#----------------------------------------------------------------------------

@persistence.persistent_class
class SelectiveAttention(torch.nn.Module):
    """Eq. 8-9: multi-head attention keeping the top mu of q.k^T per query (d_k = head_dim)."""

    def __init__(self,
        channels,                   # C: channels of both token streams.
        head_dim        = 64,       # d_k of the paper.
        mu              = 0.5,      # Kept fraction of the scores per query (0 < mu <= 1).
        chunk_size      = None,     # Query rows per chunk in the attention op (None = the op's default).
        linear_values   = False,    # Bias-free value/output projections starting as the identity?
    ):
        super().__init__()
        assert 0 < mu <= 1, f'mu must be in (0, 1], got {mu}'
        self.channels = channels
        self.num_heads = max(channels // head_dim, 1)
        self.head_dim = head_dim
        self.mu = mu
        self.chunk_size = chunk_size
        inner = self.num_heads * head_dim
        self.q = torch.nn.Linear(channels, inner)
        self.k = torch.nn.Linear(channels, inner)
        self.v = torch.nn.Linear(channels, inner, bias=not linear_values)
        self.out = torch.nn.Linear(inner, channels, bias=not linear_values)
        if linear_values:
            with torch.no_grad():
                self.v.weight.copy_(torch.eye(inner, channels))
                self.out.weight.copy_(torch.eye(channels, inner))

    def forward(self, query, context, values=None, mu=None):
        """Attend from `query` [N, Lq, C] to `context` [N, Lk, C]; `values` default to `context`; `mu` overrides self.mu."""
        values = context if values is None else values
        mu = self.mu if mu is None else mu
        misc.assert_shape(query, [None, None, self.channels])               # [N, Lq, C]
        misc.assert_shape(context, [query.shape[0], None, self.channels])   # [N, Lk, C]
        misc.assert_shape(values, list(context.shape))
        split = lambda t: t.reshape(t.shape[0], t.shape[1], self.num_heads, self.head_dim).transpose(1, 2)
        q, k, v = split(self.q(query)), split(self.k(context)), split(self.v(values))    # [N, h, L, d]
        o = selective_attention(q, k, v, mu, chunk_size=self.chunk_size)                 # [N, h, Lq, d]
        o = o.transpose(1, 2).reshape(query.shape[0], query.shape[1], -1)
        return self.out(o)

    def extra_repr(self):
        return f'channels={self.channels:d}, heads={self.num_heads:d}, head_dim={self.head_dim:d}, mu={self.mu:g}'

#----------------------------------------------------------------------------

@persistence.persistent_class
class Aligner(torch.nn.Module):
    """Eq. 7: F'_m = E_ab(F^_m, f_m^edi), aligned residuals at the positions of the edited features."""

    def __init__(self,
        channels,                   # C: channels of the residuals and of the generator features.
        num_layers      = 2,        # Selective Attention layers ("applied several times"), >= 1.
        head_dim        = 64,       # d_k.
        mu              = 0.5,      # Kept fraction of the scores per query.
        ffn_mult        = 2,        # Hidden width of the feed-forward layers, as a multiple of C.
        chunk_size      = None,     # Query rows per chunk in the attention op.
    ):
        super().__init__()
        assert num_layers >= 1
        self.channels = channels
        self.num_layers = num_layers
        attn = lambda **kw: SelectiveAttention(channels, head_dim=head_dim, mu=mu, chunk_size=chunk_size, **kw)
        self.norm_query = torch.nn.LayerNorm(channels)
        self.norm_context = torch.nn.LayerNorm(channels)
        self.attn_norms = torch.nn.ModuleList([torch.nn.LayerNorm(channels) for _ in range(num_layers)])
        self.attns = torch.nn.ModuleList([attn() for _ in range(num_layers - 1)] + [attn(linear_values=True)])
        self.ffn_norms = torch.nn.ModuleList([torch.nn.LayerNorm(channels) for _ in range(num_layers - 1)])
        self.ffns = torch.nn.ModuleList([torch.nn.Sequential(torch.nn.Linear(channels, channels * ffn_mult), torch.nn.GELU(),
            torch.nn.Linear(channels * ffn_mult, channels)) for _ in range(num_layers - 1)])

    def forward(self, F_hat, f_edit, mu=None):
        """F' [N, C, H, W] from residuals F_hat and edited features f_edit; `mu` overrides every layer's kept fraction."""
        misc.assert_shape(F_hat, [None, self.channels, None, None])
        misc.assert_shape(f_edit, list(F_hat.shape))
        N, C, H, W = F_hat.shape
        pos = sinusoidal_embedding_2d(C, H, W, device=F_hat.device)                        # [L, C]
        values = to_tokens(F_hat.to(torch.float32))                                        # [N, L, C]
        Z_F = self.norm_context(values) + pos                                              # keys: content + position
        h = self.norm_query(to_tokens(f_edit.to(torch.float32))) + pos                     # queries: Z_f
        for attn_norm, attn, ffn_norm, ffn in zip(self.attn_norms, self.attns, self.ffn_norms, self.ffns):
            h = h + attn(attn_norm(h), Z_F, mu=mu)
            h = h + ffn(ffn_norm(h))
        aligned = self.attns[-1](self.attn_norms[-1](h), Z_F, values=values, mu=mu)        # [N, L, C]
        return from_tokens(aligned, H, W)                                                  # [N, C, H, W]

    def extra_repr(self):
        return f'channels={self.channels:d}, num_layers={self.num_layers:d}'

#----------------------------------------------------------------------------
