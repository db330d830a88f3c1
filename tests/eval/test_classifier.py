"""gradstyle-classifier/1 files: round trip, attribute score = log-odds (checked with NumPy), bad files name --classifier."""

import numpy as np
import pytest
import torch

from stylegan2_ada_pytorch.dnnlib import UserError
from gradstyle_plugin.eval.classifier import AttributeClassifier, load_classifier, save_classifier

def test_round_trip_and_log_odds(tmp_path):
    torch.manual_seed(0)
    net = AttributeClassifier(img_resolution=16, img_channels=1, num_classes=3, channels=(4, 8), feature_dim=6).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    path = str(tmp_path / 'clf.pt')
    save_classifier(path, net, ['a', 'b', 'c'], attributes={'bee': 'b'})
    clf = load_classifier(path)
    x = torch.rand([5, 1, 16, 16]) * 2 - 1
    with torch.no_grad():
        logits = net(x).double().numpy()
    p = np.exp(logits - logits.max(1, keepdims=True))
    p = p / p.sum(1, keepdims=True)
    assert np.allclose(clf.probabilities(x).numpy(), p, atol=1e-6)
    assert np.allclose(clf.attribute_score(x, 'bee').numpy(), np.log(p[:, 1] / (1 - p[:, 1])), atol=1e-4)
    assert clf.features(x).shape == (5, 6) and clf.has_attribute('bee') and not clf.has_attribute('cat')
    with pytest.raises(ValueError, match='unknown classes: z'):
        save_classifier(str(tmp_path / 'bad.pt'), net, ['a', 'b', 'c'], attributes={'bee': 'z'})

def test_bad_files_name_the_flag(tmp_path):
    with pytest.raises(UserError, match='--classifier: no such file'):
        load_classifier(str(tmp_path / 'missing.pt'))
    torch.save({'weights': torch.zeros(2)}, tmp_path / 'other.pt')
    with pytest.raises(UserError, match='is not a gradstyle-classifier/1 file'):
        load_classifier(str(tmp_path / 'other.pt'))
    (tmp_path / 'junk.pt').write_bytes(b'junk')
    with pytest.raises(UserError, match='--classifier: .*cannot read'):
        load_classifier(str(tmp_path / 'junk.pt'))
