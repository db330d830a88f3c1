"""Fashion-MNIST pieces of the demo build: the attribute classifier, generator checks, scored codes.

Shape letters: N batch, C channels (1), R resolution (32), K classes (10), D w_dim.
"""

import json
import os

import numpy as np
import torch

from stylegan2_ada_pytorch import legacy
from stylegan2_ada_pytorch.training.dataset import ImageFolderDataset
from stylegan2_ada_pytorch.training.snapshot_images import save_image_grid
from gradstyle_plugin.demo.build import ATTRIBUTES, FASHION_CLASSES

# The demo classifier (ours): three conv blocks with batch norm; 90.8% on the real test split after
# 4 epochs of Adam 1e-3, batch 128, horizontal flips (a quick CPU recipe, no tuning beyond that).
CLASSIFIER_KWARGS = dict(channels=(32, 64, 128), feature_dim=128, batch_norm=True)
CLASSIFIER_BATCH = 128
CLASSIFIER_LR = 1e-3

#----------------------------------------------------------------------------
# Files.

def _run_dir_json(pkl, name):
    path = os.path.join(os.path.dirname(os.path.abspath(pkl)), name)
    return path if os.path.isfile(path) else None

def recorded_metric(pkl, metric):
    """The value of `metric` the training run recorded for this snapshot (metric-<metric>.jsonl), or None."""
    path = _run_dir_json(pkl, f'metric-{metric}.jsonl')
    for line in open(path, encoding='utf-8') if path else []:
        entry = json.loads(line)
        if entry.get('snapshot_pkl') == os.path.basename(pkl):
            return entry['results'][metric]
    return None

def training_options(pkl):
    """The run's training_options.json (plain data), or None."""
    path = _run_dir_json(pkl, 'training_options.json')
    return json.load(open(path, encoding='utf-8')) if path else None

def load_G(pkl, device):
    with open(pkl, 'rb') as f:
        return legacy.load_network_pkl(f)['G_ema'].to(device)

def load_clf(path, device):
    from gradstyle_plugin.eval.classifier import load_classifier
    return load_classifier(path, device=device)

def write_demo_network(gradstyle_pkl, out):
    """The bundle's network: G_ema with its GradStyle stages + the encoder (no D, no training_state)."""
    with open(gradstyle_pkl, 'rb') as f:
        data = legacy.load_network_pkl(f)
    keep = {key: value for key, value in data.items() if key not in ('G', 'D', 'augment_pipe', 'training_state')}
    os.makedirs(os.path.dirname(out), exist_ok=True)
    legacy.save_network_pkl(dict(keep, G=data['G_ema'], D=None, augment_pipe=None), out)

def dataset_tensors(path, max_items=None):
    """(images float [N, C, R, R] in [-1, 1], labels long [N]) of a labelled toolkit dataset."""
    ds = ImageFolderDataset(path=path, use_labels=True, max_size=max_items)
    n = len(ds)
    imgs = np.stack([ds[i][0] for i in range(n)])
    labels = np.stack([ds.get_label(i) for i in range(n)]).argmax(1)
    return torch.from_numpy(imgs).float() / 127.5 - 1, torch.from_numpy(labels).long()

#----------------------------------------------------------------------------
# The attribute classifier.

def train_classifier(train_path, test_path, out, epochs, device='cpu', log=print, seed=0):
    """Train the demo classifier on a labelled dataset and save it; returns the test accuracy."""
    from gradstyle_plugin.eval.classifier import AttributeClassifier, save_classifier
    torch.manual_seed(seed)
    x, y = dataset_tensors(train_path)
    xt, yt = dataset_tensors(test_path)
    net = AttributeClassifier(img_resolution=x.shape[-1], img_channels=x.shape[1], num_classes=len(FASHION_CLASSES),
        **CLASSIFIER_KWARGS).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=CLASSIFIER_LR)
    for epoch in range(epochs):
        net.train()
        for idx in torch.randperm(len(x)).split(CLASSIFIER_BATCH):
            xb = x[idx].to(device)
            flip = torch.rand([len(idx), 1, 1, 1], device=device) < 0.5
            loss = torch.nn.functional.cross_entropy(net(torch.where(flip, xb.flip(3), xb)), y[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        accuracy = classifier_accuracy(net, xt, yt, device)
        log(f'classifier: epoch {epoch + 1}/{epochs}, test accuracy {accuracy:.4f} ({len(xt)} real test images)')
    save_classifier(out, net.eval().cpu(), class_names=FASHION_CLASSES, attributes=dict(ATTRIBUTES))
    return accuracy

@torch.no_grad()
def classifier_accuracy(net, x, y, device, batch=500):
    net.eval()
    pred = torch.cat([net(xb.to(device)).argmax(1).cpu() for xb in x.split(batch)])
    return float((pred == y).float().mean())

#----------------------------------------------------------------------------
# The generator, seen through the classifier.

@torch.no_grad()
def sample(G, n, seed=0, batch=256, device='cpu'):
    """(ws [N, L, D], images [N, C, R, R]) of n random codes (psi 1, const noise), reproducible from seed."""
    z = torch.randn([n, G.z_dim], generator=torch.Generator().manual_seed(seed))
    ws, imgs = [], []
    for zb in z.split(batch):
        w = G.mapping(zb.to(device), None)
        ws.append(w.cpu())
        imgs.append(G.synthesis(w, noise_mode='const').cpu())
    return torch.cat(ws), torch.cat(imgs)

def check_generator(G, clf, n, grid_png):
    """Classifier confidence and class coverage of n generated samples; writes a grid of 64 of them."""
    _ws, imgs = sample(G, n, device=clf.device)
    probs = torch.cat([clf.probabilities(xb) for xb in imgs.split(500)]).cpu()
    counts = torch.bincount(probs.argmax(1), minlength=len(FASHION_CLASSES))
    rows = max(1, min(8, n // 8))
    save_image_grid(imgs[:8 * rows].numpy(), grid_png, drange=[-1, 1], grid_size=(8, rows))
    return dict(samples=n, mean_max_prob=float(probs.max(1).values.mean()), classes_covered=int((counts > 0).sum()),
        class_counts={name: int(c) for name, c in zip(FASHION_CLASSES, counts)})

def score_codes(G, clf, n, prefix):
    """W codes and per-attribute scores (log-odds of the attribute's class) of n samples for InterfaceGAN.

    Writes <prefix>_w.npy [N, D] (the codes are W: every W+ row of a mapped z is the same) and
    <prefix>_scores.csv (one column per attribute); returns both paths.
    """
    from gradstyle_plugin.eval.classifier import class_log_odds
    ws, imgs = sample(G, n, seed=1, device=clf.device)
    logits = torch.cat([clf.logits(xb) for xb in imgs.split(500)]).cpu()
    scores = torch.stack([class_log_odds(logits, FASHION_CLASSES.index(cls)) for cls in ATTRIBUTES.values()], dim=1).numpy()
    np.save(prefix + '_w.npy', ws[:, 0].numpy().astype(np.float32))
    np.savetxt(prefix + '_scores.csv', scores, delimiter=',', header=','.join(ATTRIBUTES), comments='', fmt='%.6f')
    return prefix + '_w.npy', prefix + '_scores.csv'

#----------------------------------------------------------------------------
