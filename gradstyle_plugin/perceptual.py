"""Perceptual and identity losses of GradStyle training (section 3.4, eq. 12-13).

- LPIPS (eq. 12): Zhang et al., "The Unreasonable Effectiveness of Deep Features as a Perceptual
  Metric" (CVPR 2018), VGG16 trunk, through the `lpips` pip package. `build_lpips()` never
  downloads: the VGG16 backbone comes from a local torchvision `vgg16` state_dict file (flag
  `--lpips-weights`), the linear calibration layers from the file shipped inside the package.
- ID loss (eq. 13): 1 - <F(x), F(y)> with F a unit-norm embedding. Faces use ArcFace IR-SE-50
  (Deng et al. 2019; `model_ir_se50.pth`) with the e4e/pSp face crop; other domains (cars,
  churches...) a MoCo-v2 ResNet-50 (He et al. 2020; `moco_v2_800ep_pretrain.pt`) as in e4e
  (Tov et al. 2021). `build_id_loss()` reads either file weights-only and tells them apart by
  their keys (flag `--id-weights`).

The loss modules are frozen (eval mode, requires_grad False; `train()` keeps them in eval) and are
not persistent: they never end up in a snapshot pickle.

Shape letters: N batch, H W height width, E embedding width.
"""

import os
import warnings

import torch
import torchvision

from stylegan2_ada_pytorch.torch_utils import misc
from gradstyle_plugin.encoder import ArcFaceIRSE50, build_and_load, check_state_dict, _first, _torch_load

#----------------------------------------------------------------------------
# Constants.

LPIPS_FLAG      = '--lpips-weights'
ID_FLAG         = '--id-weights'
FACE_CROP_256   = (35, 223, 32, 220)                # e4e/pSp face box of a 256x256 crop: rows [35, 223), cols [32, 220).
ARCFACE_SIZE    = 112                               # ArcFace input resolution.
MOCO_SIZE       = 224                               # MoCo ResNet-50 input resolution.
MOCO_PREFIX     = 'module.encoder_q.'               # Query-encoder prefix inside a MoCo-v2 checkpoint's state_dict.
IMAGENET_MEAN   = (0.485, 0.456, 0.406)
IMAGENET_STD    = (0.229, 0.224, 0.225)
ID_DOMAINS      = ('auto', 'face', 'moco', 'off')

#----------------------------------------------------------------------------
# LPIPS.

LPIPS_BACKBONES = dict(vgg='torchvision VGG16', alex='torchvision AlexNet')     # lpips package name -> backbone file kind.

def _lpips_calibration_path(backbone='vgg'):
    import lpips
    return os.path.join(os.path.dirname(os.path.abspath(lpips.__file__)), 'weights', 'v0.1', f'{backbone}.pth')

def _load_lpips_calibration(net, backbone='vgg'):
    # The package's own loader uses strict=False (a key mismatch would silently leave zeros); load here.
    path = _lpips_calibration_path(backbone)
    name = f'lpips package calibration file {path}'
    if not os.path.isfile(path):
        raise ValueError(f'{name}: missing (reinstall the lpips package; it ships weights/v0.1/{backbone}.pth)')
    state = _torch_load(path, name)
    targets = {f'lin{idx}.model.1.weight': lin.model[-1].weight for idx, lin in enumerate(net.lins)}
    check_state_dict(targets, state, name, 'LPIPS linear')
    with torch.no_grad():
        for key, param in targets.items():
            param.copy_(state[key])

def _vgg_targets(vgg):
    # Parameters of the lpips VGG16 slices under their torchvision names: slice<k>.<N>.weight -> features.<N>.weight.
    targets = {}
    for vgg_slice in vgg.children():
        for idx, layer in vgg_slice.named_children():
            for param_name, param in layer.named_parameters(recurse=False):
                targets[f'features.{idx}.{param_name}'] = param
    return targets

def _load_vgg_backbone(vgg, path, backbone='vgg'):
    name = f'{LPIPS_FLAG} {path}'
    state = _torch_load(path, name)
    if isinstance(state, dict) and isinstance(state.get('state_dict'), dict):
        state = state['state_dict']
    if not isinstance(state, dict) or not state:
        raise ValueError(f'{name}: not a {LPIPS_BACKBONES[backbone]} state_dict (expected a non-empty dict of tensors)')
    state = {key: value for key, value in state.items() if not str(key).startswith('classifier.')}
    targets = _vgg_targets(vgg)
    check_state_dict(targets, state, name, f'{LPIPS_BACKBONES[backbone]} (features.N.*)')
    with torch.no_grad():
        for key, param in targets.items():
            param.copy_(state[key])

def build_lpips(weights, backbone='vgg'):
    """LPIPS-VGG (v0.1) from local files only: an `lpips.LPIPS` module, eval mode, requires_grad False.

    `backbone` 'alex' builds LPIPS-AlexNet instead (a torchvision alexnet state_dict; gradstyle-eval's
    --lpips-weights may be either); the training losses use VGG as the paper does.

    `weights` is a torchvision vgg16 state_dict file (`features.N.*` keys; `classifier.*` are
    ignored), or 'random' for a random backbone (tests/demos; the values are then not perceptual).
    The linear layers always come from the calibration file inside the `lpips` package. Dropout
    is left out, so the module computes the same in train and eval mode.

    Example:
        >>> net = build_lpips('pretrained/vgg16-397923af.pth')
        >>> d = lpips_distance(net, x, y)           # [N], images in [-1, 1]
    """
    import lpips
    if weights is None or (isinstance(weights, str) and not weights):
        raise ValueError(f'{LPIPS_FLAG}: no file given (a torchvision vgg16 state_dict, or "random" for tests)')
    # Built on the meta device (torchvision would also initialise VGG16's 100M-parameter classifier),
    # then every tensor is filled: scaling constants, calibration, backbone (file or fresh init).
    with warnings.catch_warnings(), torch.device('meta'):
        warnings.simplefilter('ignore', UserWarning) # torchvision's deprecated `pretrained` argument used by lpips.
        net = lpips.LPIPS(net=backbone, version='0.1', lpips=True, pretrained=False, pnet_rand=True, pnet_tune=False,
            use_dropout=False, verbose=False)
    net.to_empty(device='cpu')
    net.scaling_layer = lpips.lpips.ScalingLayer()
    _load_lpips_calibration(net, backbone)
    if isinstance(weights, str) and weights == 'random':
        print(f'Warning: {LPIPS_FLAG} random: LPIPS uses a random {LPIPS_BACKBONES[backbone]} backbone; its values are not perceptual.')
        for layer in net.net.modules():
            if isinstance(layer, torch.nn.Conv2d):
                layer.reset_parameters()
    else:
        _load_vgg_backbone(net.net, weights, backbone)
    return net.eval().requires_grad_(False)

def lpips_distance(net, x, y):
    """LPIPS distance [N] between images x, y [N, 3, H, W] in [-1, 1] (gradients flow to x and y)."""
    misc.assert_shape(x, [None, 3, None, None])
    misc.assert_shape(y, list(x.shape))
    return net(x, y).reshape(x.shape[0])

#----------------------------------------------------------------------------
# ID loss networks.

class MoCoResNet50(torchvision.models.resnet.ResNet):
    """The query encoder of MoCo-v2 without its MLP head: unit-norm pooled features [N, 2048].

    Its state_dict keys are torchvision resnet50's minus `fc.*`.
    """

    def __init__(self):
        super().__init__(torchvision.models.resnet.Bottleneck, [3, 4, 6, 3])
        self.fc = torch.nn.Identity()

    def forward(self, x):
        misc.assert_shape(x, [None, 3, None, None])
        return torch.nn.functional.normalize(super().forward(x), dim=1)

#----------------------------------------------------------------------------

def _state_of(ckpt):
    if isinstance(ckpt, dict) and isinstance(ckpt.get('state_dict'), dict):
        return ckpt['state_dict']
    return ckpt if isinstance(ckpt, dict) else None

def _id_file_kind(state):
    """Tell the ID-network files apart by their keys: 'face', 'moco', 'resnet', 'e4e' or None."""
    keys = [str(key) for key in state] if state else []
    if any(key.startswith(MOCO_PREFIX) for key in keys):
        return 'moco'
    if 'input_layer.0.weight' in keys and any(key.startswith('output_layer.') for key in keys):
        return 'face'
    if any(key.startswith('encoder.input_layer.') for key in keys):
        return 'e4e'
    if 'conv1.weight' in keys and any(key.startswith('layer4.') for key in keys):
        return 'resnet'
    return None

_KIND_TEXT = dict(
    face    = 'an ArcFace IR-SE-50 file',
    moco    = 'a MoCo ResNet-50 file',
    e4e     = 'an e4e checkpoint',
    resnet  = f'a plain ResNet state_dict (MoCo-v2 checkpoints keep the backbone under "state_dict" -> {MOCO_PREFIX}*)',
)
_WANT_TEXT = dict(face='ArcFace', moco='a MoCo-v2 ResNet-50 checkpoint')

def _load_id_net(path, domain):
    name = f'{ID_FLAG} {path}'
    state = _state_of(_torch_load(path, name))
    kind = _id_file_kind(state)
    if kind not in ('face', 'moco'):
        if kind is not None and domain != 'auto':
            raise ValueError(f'{name}: this looks like {_KIND_TEXT[kind]}, not {_WANT_TEXT[domain]}')
        found = f'this looks like {_KIND_TEXT[kind]}' if kind else f'keys: {_first(state) if state else "none"}'
        raise ValueError(f'{name}: not an ArcFace IR-SE-50 (model_ir_se50.pth) or MoCo-v2 ResNet-50 checkpoint ({found})')
    if domain != 'auto' and kind != domain:
        raise ValueError(f'{name}: this looks like {_KIND_TEXT[kind]}, not {_WANT_TEXT[domain]}')
    if kind == 'face':
        return build_and_load(ArcFaceIRSE50, {}, state, name, 'ArcFace IR-SE-50'), kind
    backbone = {key[len(MOCO_PREFIX):]: value for key, value in state.items() if key.startswith(MOCO_PREFIX)}
    backbone = {key: value for key, value in backbone.items() if not key.startswith('fc.')}
    return build_and_load(MoCoResNet50, {}, backbone, name, 'MoCo-v2 ResNet-50 (encoder_q)'), kind

#----------------------------------------------------------------------------

class IDLoss(torch.nn.Module):
    """1 - cos(F(x), F(y)) per sample [N] for images in [-1, 1] (eq. 13); F is frozen.

    domain 'face': crop the e4e/pSp face box (rows 35..222, cols 32..219 of a 256 image, scaled
    to other sizes), adaptive-average-pool to 112x112, ArcFace. domain 'moco': map to [0, 1],
    resize to 224x224 (bilinear, antialiased), ImageNet-normalise, MoCo ResNet-50. Build it with
    `build_id_loss()`.
    """

    def __init__(self,
        net,                        # Frozen embedding network returning unit-norm [N, E] vectors.
        domain,                     # 'face' (ArcFace) or 'moco' (MoCo ResNet-50).
    ):
        super().__init__()
        assert domain in ('face', 'moco')
        self.domain = domain
        self.net = net.eval().requires_grad_(False)
        self.register_buffer('mean', torch.tensor(IMAGENET_MEAN).reshape(1, 3, 1, 1), persistent=False)
        self.register_buffer('std', torch.tensor(IMAGENET_STD).reshape(1, 3, 1, 1), persistent=False)

    def train(self, mode=True):
        super().train(mode)
        self.net.eval() # BatchNorm statistics and dropout of the frozen network stay in eval mode.
        return self

    def preprocess(self, img):
        misc.assert_shape(img, [None, 3, None, None])
        H, W = img.shape[2], img.shape[3]
        if self.domain == 'face':
            r0, r1, c0, c1 = FACE_CROP_256
            img = img[:, :, round(r0 * H / 256) : round(r1 * H / 256), round(c0 * W / 256) : round(c1 * W / 256)]
            return torch.nn.functional.adaptive_avg_pool2d(img, (ARCFACE_SIZE, ARCFACE_SIZE))
        img = (img + 1) / 2
        if (H, W) != (MOCO_SIZE, MOCO_SIZE):
            img = torch.nn.functional.interpolate(img, size=(MOCO_SIZE, MOCO_SIZE), mode='bilinear', align_corners=False,
                antialias=True)
        return (img - self.mean.to(img.dtype)) / self.std.to(img.dtype)

    def embed(self, img):
        """Unit-norm embedding [N, E] of images [N, 3, H, W] in [-1, 1]."""
        return self.net(self.preprocess(img))

    def forward(self, x, y):
        misc.assert_shape(y, list(x.shape))
        return 1 - (self.embed(x) * self.embed(y)).sum(dim=1)

def build_id_loss(weights, domain='auto'):
    """Build the ID loss from a local file (flag `--id-weights`); None when domain is 'off'.

    domain: 'face' (ArcFace `model_ir_se50.pth`), 'moco' (MoCo-v2 `moco_v2_800ep_pretrain.pt`),
    'auto' (told from the file's keys) or 'off'. Files are read with torch.load(weights_only=True)
    and strictly (keys and shapes). A file of the other kind gives a one-line ValueError.

    Example:
        >>> id_loss = build_id_loss('pretrained/model_ir_se50.pth')
        >>> loss = id_loss(x_rec, x).mean()        # x_rec, x: [N, 3, 256, 256] in [-1, 1]
    """
    if domain not in ID_DOMAINS:
        raise ValueError(f'ID loss domain must be one of {", ".join(ID_DOMAINS)}, got {domain!r}')
    if domain == 'off':
        return None
    if weights is None or (isinstance(weights, str) and not weights):
        raise ValueError(f'{ID_FLAG}: no file given (ArcFace model_ir_se50.pth or a MoCo-v2 ResNet-50 checkpoint; '
            'or turn the ID loss off)')
    net, kind = _load_id_net(weights, domain)
    return IDLoss(net, kind)

#----------------------------------------------------------------------------
