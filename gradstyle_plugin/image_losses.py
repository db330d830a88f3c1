"""Image reconstruction losses shared by `gradstyle-train` (GradStyle eq. 11-13) and
`gradstyle-train-encoder` (e4e, Tov et al. 2021): one implementation, one protocol.

    total = l2 * MSE(x, y) + lpips * LPIPS_VGG(x, y) + id * (1 - cos(ID(x), ID(y)))     per sample [N]

Both images are first resized to the loss resolution: e4e (and HFGI, which GradStyle follows)
pools every output to 256x256 (its `face_pool`, adaptive average pooling) before the losses, so
the default is 256 for generators of at least 256 px and the full resolution below
(`default_loss_resolution`). Grayscale images (1 channel) are repeated to 3 channels for the
pretrained LPIPS and ID networks; L2 uses the images as they are.

LPIPS and ID need local weight files (no downloads). A term whose file is missing is *off*: the
config builders record its effective weight 0 (`effective_weights`) next to the requested one,
and print the returned warnings loudly at start.

Shape letters: N batch, C channels, H W height width.
"""

import torch

from stylegan2_ada_pytorch import dnnlib
from stylegan2_ada_pytorch.torch_utils import misc
from stylegan2_ada_pytorch.torch_utils import training_stats

#----------------------------------------------------------------------------

E4E_LOSS_RESOLUTION = 256   # e4e's face_pool output size.

def default_loss_resolution(img_resolution):
    """e4e's 256 for generators >= 256 px; the full resolution for smaller ones."""
    return E4E_LOSS_RESOLUTION if img_resolution >= E4E_LOSS_RESOLUTION else int(img_resolution)

def resolve_loss_resolution(loss_res, img_resolution, flag='--loss-res'):
    """The loss resolution for `loss_res` (None = default), checked against the image size."""
    if loss_res is None:
        return default_loss_resolution(img_resolution)
    loss_res = int(loss_res)
    if not 1 <= loss_res <= img_resolution:
        raise dnnlib.UserError(f'{flag}: must be between 1 and the image resolution {img_resolution}, got {loss_res}')
    return loss_res

def effective_weights(l2, lpips, id, lpips_weights, id_weights):
    """(EasyDict(l2, lpips, id) of the weights that really apply, [warning lines]).

    A requested LPIPS or ID term without its weights file is off (weight 0), with a warning
    that names the flag.

    Example:
        >>> w, notes = effective_weights(1.0, 0.8, 0.1, lpips_weights=None, id_weights=None)
        >>> w.lpips, w.id
        (0.0, 0.0)
    """
    weights = dnnlib.EasyDict(l2=float(l2), lpips=float(lpips), id=float(id))
    notes = []
    if weights.lpips != 0 and lpips_weights is None:
        notes.append(f'WARNING: the LPIPS term (lambda {lpips:g}) is OFF: no --lpips-weights file given '
            '(a torchvision vgg16 state_dict); the recorded lpips_weight is 0.')
        weights.lpips = 0.0
    if weights.id != 0 and id_weights is None:
        notes.append(f'WARNING: the ID term (lambda {id:g}) is OFF: no --id-weights file given '
            '(ArcFace model_ir_se50.pth or a MoCo-v2 ResNet-50); the recorded id_weight is 0.')
        weights.id = 0.0
    return weights, notes

#----------------------------------------------------------------------------

def to_loss_resolution(img, loss_res):
    """Adaptive average pooling to [N, C, loss_res, loss_res] (e4e's face_pool); identity at that size."""
    if img.shape[-1] == loss_res and img.shape[-2] == loss_res:
        return img
    return torch.nn.functional.adaptive_avg_pool2d(img, (loss_res, loss_res))

def to_rgb(img):
    """Repeat a 1-channel image to 3 channels for networks pretrained on RGB."""
    return img.expand(-1, 3, -1, -1) if img.shape[1] == 1 else img

class ImageLosses(torch.nn.Module):
    """Weighted L2 + LPIPS + ID between generated and source images, per sample.

    Build the LPIPS / ID networks with `perceptual.build_lpips` / `perceptual.build_id_loss` (or
    pass None for a term that is off). Not persistent: loss networks never enter a snapshot.

    Example:
        >>> losses = ImageLosses(loss_res=256, l2_weight=1.0, lpips_weight=0.8, lpips_net=build_lpips('vgg16.pth'))
        >>> total = losses(x_rec, x, prefix='rec')      # [N]; reports Loss/rec/l2, Loss/rec/lpips
    """

    def __init__(self,
        loss_res,                   # Resolution the images are pooled to before every term.
        l2_weight       = 1.0,      # lambda of the MSE term.
        lpips_weight    = 0.0,      # lambda of the LPIPS term (applies only with lpips_net).
        id_weight       = 0.0,      # lambda of the ID term (applies only with id_net).
        lpips_net       = None,     # lpips.LPIPS module (frozen), or None.
        id_net          = None,     # perceptual.IDLoss module (frozen), or None.
    ):
        super().__init__()
        self.loss_res = int(loss_res)
        self.lpips_net = lpips_net
        self.id_net = id_net
        self.weights = dnnlib.EasyDict(l2=float(l2_weight), lpips=float(lpips_weight) if lpips_net is not None else 0.0,
            id=float(id_weight) if id_net is not None else 0.0)

    def terms(self, x, target):
        """Unweighted terms {name: [N]} of the active losses, at the loss resolution."""
        misc.assert_shape(target, list(x.shape))
        x = to_loss_resolution(x, self.loss_res)
        target = to_loss_resolution(target, self.loss_res)
        out = dict(l2=(x - target).square().mean([1, 2, 3]))
        if self.lpips_net is not None and self.weights.lpips != 0:
            out['lpips'] = self.lpips_net(to_rgb(x), to_rgb(target)).reshape(x.shape[0])
        if self.id_net is not None and self.weights.id != 0:
            out['id'] = self.id_net(to_rgb(x), to_rgb(target))
        return out

    def forward(self, x, target, prefix=None):
        """Weighted sum [N]; with `prefix`, each term is reported as training stat Loss/<prefix>/<term>."""
        total = 0
        for name, value in self.terms(x, target).items():
            if prefix is not None:
                training_stats.report(f'Loss/{prefix}/{name}', value)
            total = total + self.weights[name] * value
        return total

#----------------------------------------------------------------------------
