"""Attribute classifiers for `gradstyle-eval --classifier`: attribute change of edits (paper Table 2 asks
for edit ID; the attribute score says whether the edit did what it is named after) and, for domains
without a face network, the features used for the ID cosine.

File format `gradstyle-classifier/1` (a torch file read with weights_only=True; nothing in it is executed):

    {'format': 'gradstyle-classifier/1', 'kwargs': AttributeClassifier kwargs, 'state_dict': ...,
     'class_names': [K names], 'attributes': {attribute or direction name: class name}}

An attribute's score is the log-odds of its class, log p / (1 - p) (the score InterfaceGAN
boundaries are fitted on), computed exactly from the logits as the class logit minus the logsumexp
of the other logits, so it does not saturate where p rounds to 0 or 1. The network (ours): conv3x3 + batch norm + ReLU + 2x2 max-pool per
width of `channels`, global average pooling, a `feature_dim` ReLU layer (the features), a linear
classifier.

    >>> clf = load_classifier('classifier.pt')
    >>> clf.probabilities(x)                # [N, K]; x [N, C, R, R] in [-1, 1]
    >>> clf.attribute_score(x, 'dress')     # [N] log-odds of the class of attribute 'dress'
    >>> clf.features(x)                     # [N, feature_dim], for the ID cosine

Shape letters: N batch, C channels, R resolution, K classes, F feature_dim.
"""

import os

import torch

from stylegan2_ada_pytorch import dnnlib
from stylegan2_ada_pytorch.dnnlib import UserError
from stylegan2_ada_pytorch.torch_utils import misc

FORMAT = 'gradstyle-classifier/1'
FLAG = '--classifier'

#----------------------------------------------------------------------------

class AttributeClassifier(torch.nn.Module):
    def __init__(self,
        img_resolution,             # R: input resolution.
        img_channels,               # C: input channels.
        num_classes,                # K: number of classes.
        channels        = (32, 64, 128),    # Width of each conv block (ours).
        feature_dim     = 128,      # F: width of the feature layer (ours).
        batch_norm      = True,     # Batch norm after each conv (ours).
    ):
        super().__init__()
        self.init_kwargs = dict(img_resolution=int(img_resolution), img_channels=int(img_channels), num_classes=int(num_classes),
            channels=[int(c) for c in channels], feature_dim=int(feature_dim), batch_norm=bool(batch_norm))
        self.img_resolution, self.img_channels, self.num_classes = int(img_resolution), int(img_channels), int(num_classes)
        layers, prev = [], img_channels
        for width in channels:
            layers += [torch.nn.Conv2d(prev, width, 3, padding=1)] + ([torch.nn.BatchNorm2d(width)] if batch_norm else [])
            layers += [torch.nn.ReLU(), torch.nn.MaxPool2d(2)]
            prev = width
        self.trunk = torch.nn.Sequential(*layers)
        self.feature = torch.nn.Sequential(torch.nn.Linear(prev, feature_dim), torch.nn.ReLU())
        self.head = torch.nn.Linear(feature_dim, num_classes)

    def features(self, x):
        misc.assert_shape(x, [None, self.img_channels, self.img_resolution, self.img_resolution])
        return self.feature(self.trunk(x).mean([2, 3]))

    def forward(self, x):
        return self.head(self.features(x))

#----------------------------------------------------------------------------

class Classifier:
    """A loaded classifier (in memory, never pickled): the net in eval mode plus its names."""

    def __init__(self, net, class_names, attributes, path=None, device='cpu'):
        self.device = torch.device(device)
        self.net = net.eval().requires_grad_(False).to(self.device)
        self.class_names = list(class_names)
        self.attributes = dict(attributes)
        self.path = path

    def _in(self, x):
        return x.to(self.device, torch.float32)

    @torch.no_grad()
    def logits(self, x):
        """[N, K] logits of images [N, C, R, R] in [-1, 1]."""
        return self.net(self._in(x))

    def probabilities(self, x):
        """[N, K] softmax probabilities of images [N, C, R, R] in [-1, 1]."""
        return torch.softmax(self.logits(x), dim=1)

    @torch.no_grad()
    def features(self, x):
        """[N, F] features of images in [-1, 1] (the ID cosine of non-face domains)."""
        return self.net.features(self._in(x))

    def attribute_score(self, x, name):
        """[N] log-odds of the class of attribute `name` (KeyError when the file names no such attribute)."""
        k = self.class_names.index(self.attributes[name])
        return class_log_odds(self.logits(x), k).float()

    def has_attribute(self, name):
        return name in self.attributes

def class_log_odds(logits, k):
    """[N] float64 log p_k / (1 - p_k) of softmax(logits [N, K]), exactly: logit_k - logsumexp_{j != k} logit_j.

        >>> class_log_odds(torch.tensor([[2.0, 0.0, 0.0]]), 0)     # log(e^2 / 2) = 1.3069
    """
    logits = logits.double()
    others = torch.cat([logits[:, :k], logits[:, k + 1:]], dim=1)
    return logits[:, k] - torch.logsumexp(others, dim=1)

def save_classifier(path, net, class_names, attributes={}):
    """Write a gradstyle-classifier/1 file (atomically)."""
    if len(class_names) != net.num_classes:
        raise ValueError(f'{len(class_names)} class names for {net.num_classes} classes')
    unknown = sorted(set(attributes.values()) - set(class_names))
    if unknown:
        raise ValueError(f'attributes name unknown classes: {", ".join(unknown)}')
    data = dict(format=FORMAT, kwargs=dict(net.init_kwargs), state_dict={k: v.cpu() for k, v in net.state_dict().items()},
        class_names=list(class_names), attributes=dict(attributes))
    with dnnlib.util.atomic_write(path) as f:
        torch.save(data, f)

def load_classifier(path, device='cpu'):
    """A Classifier from a gradstyle-classifier/1 file; UserError naming --classifier on a bad file."""
    if not os.path.isfile(path):
        raise UserError(f'{FLAG}: no such file: {path}')
    try:
        data = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as err:     # noqa: BLE001 - any unreadable file is one user-facing line
        raise UserError(f'{FLAG}: {path}: cannot read ({str(err).splitlines()[0] if str(err) else type(err).__name__})')
    if not isinstance(data, dict) or data.get('format') != FORMAT:
        raise UserError(f'{FLAG}: {path} is not a {FORMAT} file')
    try:
        net = AttributeClassifier(**data['kwargs'])
        net.load_state_dict(data['state_dict'])
    except (TypeError, RuntimeError, KeyError) as err:
        raise UserError(f'{FLAG}: {path}: weights do not fit the recorded network ({str(err).splitlines()[0]})')
    return Classifier(net, data['class_names'], data.get('attributes', {}), path=path, device=device)

#----------------------------------------------------------------------------
