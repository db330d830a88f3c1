"""gradstyle_plugin.eval.methods: each method and ablation really switches its named part off.

Networks: the perturbed tiny GradStyle fixture of tests/plugin/test_edit.py (every GRM, GAM and
gate non-trivial). A switch is checked twice: against a computation written here (plain synthesis,
the streams with the knob), and by perturbing the part that should be off (nothing changes) or on
(the output changes).
"""

import copy

import pytest
import torch

from stylegan2_ada_pytorch.dnnlib import UserError
from gradstyle_plugin import streams
from gradstyle_plugin.attach import stage_modules
from gradstyle_plugin.eval.methods import METHODS, Method, parse_methods
from ..plugin.test_edit import _perturb, tiny_gradstyle

#----------------------------------------------------------------------------

@pytest.fixture(scope='module')
def nets():
    G0, G, E = tiny_gradstyle()
    return G0, G, E

def _imgs():
    return torch.rand([2, 3, 32, 32], generator=torch.Generator().manual_seed(7)) * 2 - 1

def _d():
    return torch.randn([1, 32], generator=torch.Generator().manual_seed(8)) * 0.8

def _run(name, G, E, **kwargs):
    m = Method(name, G, E, **kwargs)
    inv = m.invert(_imgs())
    return inv, m.render(inv, inv.ws + 2.0 * _d()), m

def _perturbed(G, part, stage=None, seed=99):
    G2 = copy.deepcopy(G)
    for name, module in stage_modules(G2).items():
        if stage is None or name == stage:
            _perturb(getattr(module, part), 0.3, seed)
    return G2

def test_e4e_is_plain_synthesis_of_w_plus(nets):
    G0, G, E = nets
    inv, edit, _m = _run('e4e', G, E)
    with torch.no_grad():
        ws = E(_imgs())[0]
        assert torch.equal(inv.ws, ws)
        assert torch.equal(inv.img_rec, G0.synthesis(ws, noise_mode='const'))
        assert torch.equal(edit, G0.synthesis(ws + 2.0 * _d(), noise_mode='const'))

def test_no_gam_equals_grm_and_ignores_the_aligner(nets):
    _G0, G, E = nets
    inv_grm, edit_grm, _m = _run('grm', G, E)
    inv_ng, edit_ng, _m = _run('no-gam', G, E)
    assert torch.equal(inv_grm.img_rec, inv_ng.img_rec) and torch.equal(edit_grm, edit_ng)
    with torch.no_grad():
        ref = streams.editing_stream(G, inv_ng.ws + 2.0 * _d(), inv_ng.residuals, align=False)[0]
    assert torch.equal(edit_ng, ref)
    G2 = _perturbed(G, 'aligner')
    assert torch.equal(_run('no-gam', G2, E)[1], edit_ng)                   # the GAMs are off
    _inv, edit_gs, _m = _run('gradstyle', G, E)
    assert not torch.allclose(_run('gradstyle', G2, E)[1], edit_gs, atol=1e-4)   # ... and on in gradstyle
    assert not torch.allclose(edit_gs, edit_ng, atol=1e-4)

def test_no_grm_is_the_plain_generator(nets):
    G0, G, E = nets
    inv, edit, m = _run('no-grm', G, E)
    inv_e4e, edit_e4e, _m = _run('e4e', G, E)
    assert torch.equal(inv.img_rec, inv_e4e.img_rec) and torch.equal(edit, edit_e4e)
    G2 = _perturbed(G, 'grm')
    assert torch.equal(_run('no-grm', G2, E)[0].img_rec, inv.img_rec)
    assert not torch.allclose(_run('gradstyle', G2, E)[0].img_rec, _run('gradstyle', G, E)[0].img_rec, atol=1e-4)
    assert m.identity_error(inv) == {}

@pytest.mark.parametrize('name, kept', [('stage-low', 'b8'), ('stage-high', 'b32')])
def test_single_stage_methods_use_only_their_stage(nets, name, kept):
    _G0, G, E = nets
    inv, edit, m = _run(name, G, E)
    assert m.stage_names == [kept] and list(inv.residuals) == [kept]
    with torch.no_grad():
        ws, T = E(_imgs())
        ref_rec, rec = streams.reconstruction_stream(G, ws, T, stages={kept})
        ref_edit = streams.editing_stream(G, ws + 2.0 * _d(), {kept: rec[kept]['F']}, stages={kept})[0]
    assert torch.equal(inv.img_rec, ref_rec) and torch.equal(edit, ref_edit)
    others = [s for s in stage_modules(G) if s != kept]
    G2 = G
    for s in others:
        G2 = _perturbed(G2, 'grm', s)
        G2 = _perturbed(G2, 'aligner', s)
    inv2, edit2, _m = _run(name, G2, E)
    assert torch.equal(inv2.img_rec, inv.img_rec) and torch.equal(edit2, edit)
    assert not torch.allclose(_run(name, _perturbed(G, 'grm', kept), E)[0].img_rec, inv.img_rec, atol=1e-4)

def test_dense_is_mu_one(nets):
    _G0, G, E = nets
    inv, edit, _m = _run('dense', G, E)
    with torch.no_grad():
        ref = streams.editing_stream(G, inv.ws + 2.0 * _d(), inv.residuals, mu=1.0)[0]
    assert torch.equal(edit, ref)
    assert not torch.allclose(edit, _run('gradstyle', G, E)[1], atol=1e-5)
    assert all(float(a.aligner_kwargs['mu']) == 0.5 for a in [s.init_kwargs for s in stage_modules(G).values()])

def test_identity_error_is_zero_without_alignment(nets):
    _G0, G, E = nets
    inv, _edit, m = _run('grm', G, E)
    assert all(float(v.abs().max()) == 0 for v in m.identity_error(inv).values())
    inv, _edit, m = _run('gradstyle', G, E)
    err = m.identity_error(inv)
    assert sorted(err) == sorted(stage_modules(G)) and all(float(v.min()) > 0 for v in err.values())

def test_project_fits_better_than_its_start(nets):
    G0, G, E = nets
    x = _imgs()
    inv, edit, m = _run('project', G, E, project_steps=40, project_lr=0.05)
    start = _run('e4e', G, E)[0]
    mse = lambda a: float((a - x).square().mean())
    assert mse(inv.img_rec) < 0.8 * mse(start.img_rec)
    with torch.no_grad():
        assert torch.equal(inv.img_rec, G0.synthesis(inv.ws, noise_mode='const'))
        assert torch.equal(edit, G0.synthesis(inv.ws + 2.0 * _d(), noise_mode='const'))

def test_parameter_counts_and_method_names(nets):
    G0, G, E = nets
    counts = {n: Method(n, G, E).parameter_count() for n in METHODS}
    plain = sum(p.numel() for p in G0.parameters()) + sum(p.numel() for p in E.parameters())
    assert counts['e4e'] == plain and counts['project'] == plain
    assert counts['gradstyle'] == plain + sum(p.numel() for p in G.synthesis.injectors.parameters())
    assert counts['e4e'] < counts['stage-low'] < counts['grm'] < counts['gradstyle'] == counts['dense']
    assert parse_methods([], has_gradstyle=False) == ['e4e', 'project']
    assert parse_methods(['e4e,gradstyle'], has_gradstyle=True) == ['e4e', 'gradstyle']
    with pytest.raises(UserError, match='--methods: unknown method'):
        parse_methods(['hfgi'], True)
    with pytest.raises(UserError, match='need a GradStyle snapshot'):
        parse_methods(['grm'], False)

def test_plain_generator_with_an_encoder(tmp_path):
    # A plain generator + an encoder file: the default methods are the two that need no GradStyle stages.
    import numpy as np
    import PIL.Image
    from stylegan2_ada_pytorch.dnnlib import UserError as _UserError
    from gradstyle_plugin import evaluate
    from ..plugin.test_edit import network_files
    paths, G0, _G, E = network_files(tmp_path)
    (tmp_path / 'imgs').mkdir()
    for i in range(2):
        PIL.Image.fromarray(np.random.RandomState(i).randint(0, 256, (32, 32, 3), dtype=np.uint8)).save(tmp_path / 'imgs' / f'{i}.png')
    report = evaluate(paths.plain, str(tmp_path / 'imgs'), encoder=paths.encoder, project_steps=2, force=True, log=lambda s: None)   # untrained encoder
    assert list(report['methods']) == ['e4e', 'project'] and report['protocol']['network']['mode'] == 'e4e'
    assert report['protocol']['encoder']['file'] == paths.encoder
    with pytest.raises(_UserError, match='--methods: grm need a GradStyle snapshot'):
        evaluate(paths.plain, str(tmp_path / 'imgs'), encoder=paths.encoder, methods=['grm'], force=True, log=lambda s: None)
