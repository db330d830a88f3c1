"""The "intended" edit fractions of report.json, recomputed by brute force from per-image records.

intended: each image is scored on the side it can move to (-alpha edits if its source has the
attribute, i.e. source log-odds > 0, else +alpha edits); intended both: every image on both signs.
"""

import itertools

import numpy as np

from gradstyle_plugin.eval.report import summarise_edits

ALPHAS = [-3.0, -1.5, 0.0, 1.5, 3.0]

def _images(seed, n=40):
    rnd = np.random.RandomState(seed)
    images = []
    for i in range(n):
        cells = {str(a): dict(id=float(rnd.rand()), attr=(0.0 if a == 0 else float(rnd.randn())), lec=1.0) for a in ALPHAS}
        if i % 7 == 3:
            cells['1.5']['attr'] = None                                  # an unscored edit is left out, not counted as a miss
        images.append(dict(image=f'img{i}.png', edits=dict(d=cells), smoothness=dict(d=1.0),
            attr_source=dict(d=None if i % 11 == 5 else float(rnd.randn() * 3)), attr_offset=dict(d=float(rnd.randn()))))
    return images

def _brute(images, both):
    hits, total = 0, 0
    for r, a in itertools.product(images, [a for a in ALPHAS if a != 0]):
        v, s = r['edits']['d'][str(a)]['attr'], r['attr_source']['d']
        if v is None:
            continue
        if not both and (s is None or (s > 0 and a > 0) or (s <= 0 and a < 0)):
            continue
        total += 1
        hits += (a > 0 and v > 0) or (a < 0 and v < 0)
    return hits / total

def test_intended_fractions_match_brute_force():
    for seed in range(3):
        images = _images(seed)
        s = summarise_edits(images, 'd', ALPHAS)
        assert s['attr_intended'] == _brute(images, both=False)
        assert s['attr_intended_both'] == _brute(images, both=True)
        assert s['attr_intended'] != s['attr_intended_both']
        assert s['attr_offset'] == np.mean([r['attr_offset']['d'] for r in images])
        members = [r for r in images if r['attr_source']['d'] is not None and r['attr_source']['d'] > 0]
        assert s['per_alpha']['-3.0']['attr_intended'] == np.mean([r['edits']['d']['-3.0']['attr'] < 0 for r in members])
        assert s['per_alpha']['0.0']['attr_intended'] is None

def test_a_do_nothing_edit_scores_zero():
    # the "do nothing" baseline: every edit equals the alpha-0 edit, so no change has the sign of alpha
    images = _images(0)
    for r in images:
        for cell in r['edits']['d'].values():
            cell['attr'] = 0.0
    s = summarise_edits(images, 'd', ALPHAS)
    assert s['attr_intended'] == 0.0 and s['attr_intended_both'] == 0.0

def test_each_image_counts_on_its_own_side():
    # a member that loses the attribute and a non-member that gains it: both intended; their other sides are not scored
    cell = lambda m, p: {'-1.0': dict(id=1.0, attr=m, lec=0.0), '1.0': dict(id=1.0, attr=p, lec=0.0)}
    images = [dict(image='member', edits=dict(d=cell(-2.0, -0.5)), smoothness=dict(d=None), attr_source=dict(d=4.0), attr_offset=dict(d=0.0)),
        dict(image='other', edits=dict(d=cell(0.3, 1.0)), smoothness=dict(d=None), attr_source=dict(d=-6.0), attr_offset=dict(d=0.0))]
    s = summarise_edits(images, 'd', [-1.0, 1.0])
    assert s['attr_intended'] == 1.0 and s['attr_intended_both'] == 0.5
