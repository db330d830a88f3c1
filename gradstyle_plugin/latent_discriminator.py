"""The latent discriminator of e4e (Tov et al. 2021, section 4.2 "Latent discriminator").

e4e keeps the encoder's codes inside W by training a small MLP to tell them apart from codes the
generator's mapping network makes from z ~ N(0, I), with the non-saturating logistic loss and R1 on
the real codes; the encoder gets the adversarial term. The layout is e4e's LatentCodesDiscriminator:
(num_layers - 1) x (Linear(w_dim, w_dim) + LeakyReLU(0.2)), then Linear(w_dim, 1).

Shape letters: N batch, D w_dim.
"""

import torch

from stylegan2_ada_pytorch.torch_utils import misc, persistence

#----------------------------------------------------------------------------

@persistence.persistent_class
class LatentDiscriminator(torch.nn.Module):
    """MLP logits [N, 1] of w codes [N, D].

    Example:
        >>> latent_D = LatentDiscriminator(w_dim=512)     # e4e: 4 linear layers
        >>> logits = latent_D(G.mapping(z, None)[:, 0])    # [N, 1]
    """

    def __init__(self,
        w_dim,                      # Width D of the codes.
        num_layers      = 4,        # Linear layers, the last one giving the logit (e4e: 4).
        negative_slope  = 0.2,      # LeakyReLU slope after each hidden layer (e4e: 0.2).
    ):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f'LatentDiscriminator: num_layers must be >= 1, got {num_layers!r}')
        self.w_dim = w_dim
        layers = []
        for _ in range(num_layers - 1):
            layers += [torch.nn.Linear(w_dim, w_dim), torch.nn.LeakyReLU(negative_slope)]
        layers.append(torch.nn.Linear(w_dim, 1))
        self.net = torch.nn.Sequential(*layers)

    def forward(self, w):
        misc.assert_shape(w, [None, self.w_dim])
        return self.net(w)

#----------------------------------------------------------------------------
