"""gradstyle-classifier/1 files: round trip, attribute score = log-odds (checked with NumPy), bad files name --classifier."""

import numpy as np
import pytest
import torch

from stylegan2_ada_pytorch.dnnlib import UserError
from gradstyle_plugin.eval.classifier import AttributeClassifier, class_log_odds, load_classifier, save_classifier

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

def test_log_odds_are_exact_where_p_rounds_to_0_or_1():
    # float64 NumPy reference: log p_k - log(1 - p_k) with 1 - p_k summed from the other classes,
    # on logits whose softmax is 1 - 1e-30 or 1e-30 in float32 (a clamp would give +-13.8).
    logits = np.array([[80.0, 10.0, 11.0], [-60.0, 5.0, 7.0], [0.3, -0.2, 0.1], [3.0, 3.0, 3.0]])
    for k in range(3):
        others = np.delete(logits, k, axis=1)
        m = logits.max(1, keepdims=True)
        log_p = logits[:, k] - (m[:, 0] + np.log(np.exp(logits - m).sum(1)))
        log_not_p = np.log(np.exp(others - m).sum(1)) + m[:, 0] - (m[:, 0] + np.log(np.exp(logits - m).sum(1)))
        got = class_log_odds(torch.tensor(logits, dtype=torch.float32), k).numpy()
        assert got.dtype == np.float64
        assert np.allclose(got, log_p - log_not_p, rtol=1e-6, atol=1e-5), (k, got, log_p - log_not_p)
    assert class_log_odds(torch.tensor(logits), 0)[0] > 60 and class_log_odds(torch.tensor(logits), 0)[1] < -60
    assert abs(float(class_log_odds(torch.tensor([[3.0, 3.0, 3.0]]), 1)[0]) - np.log(0.5)) < 1e-12

def test_bad_files_name_the_flag(tmp_path):
    with pytest.raises(UserError, match='--classifier: no such file'):
        load_classifier(str(tmp_path / 'missing.pt'))
    torch.save({'weights': torch.zeros(2)}, tmp_path / 'other.pt')
    with pytest.raises(UserError, match='is not a gradstyle-classifier/1 file'):
        load_classifier(str(tmp_path / 'other.pt'))
    (tmp_path / 'junk.pt').write_bytes(b'junk')
    with pytest.raises(UserError, match='--classifier: .*cannot read'):
        load_classifier(str(tmp_path / 'junk.pt'))
