"""GradStyle model: attach is the identity, gradient routing, GAM alignment fit, pickles, 1024 shapes."""

import copy

import pytest
import torch

from stylegan2_ada_pytorch import dnnlib, legacy, registry, testing
from stylegan2_ada_pytorch.networks import Generator
from gradstyle_plugin import attach, presets, streams
from gradstyle_plugin import encoder as encoder_module
from gradstyle_plugin.grm import GateFusion, GradualResidualModule
from gradstyle_plugin.network import GradStyleNet
from gradstyle_plugin.stage import GradStyleStage

#----------------------------------------------------------------------------

def _tiny_setup(seed=0):
    G0 = testing.tiny_generator(seed=seed)
    torch.manual_seed(seed)
    G = attach.attach(G0, preset='tiny')
    E = dnnlib.util.construct_class_by_name(**encoder_module.small_encoder_kwargs(32, w_dim=32, feature_channels=32))
    E = E.eval().requires_grad_(False)
    img = torch.randn([2, 3, 32, 32], generator=torch.Generator().manual_seed(seed + 1)).clamp(-1, 1)
    return G0, G, E, img

def _perturb(module, scale=0.05, seed=0):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * scale)

#----------------------------------------------------------------------------

def test_default_stages_follow_the_paper_and_read_widths():
    assert presets.default_stages(1024) == ['b16', 'b32', 'b64']
    assert presets.default_stages(256) == ['b16', 'b32', 'b64']
    assert presets.default_stages(64) == ['b16', 'b32', 'b64']
    assert presets.default_stages(32) == ['b8', 'b16', 'b32']
    G0 = testing.tiny_generator()
    kwargs = presets.stage_injector_kwargs(G0, preset='tiny')
    assert {s: k[0].channels for s, k in kwargs.items()} == {s: G0.synthesis.stage_channels[s] for s in ['b8', 'b16', 'b32']}
    assert [k[0].is_last for k in kwargs.values()] == [False, False, True]
    with pytest.raises(dnnlib.UserError, match='--stages: b128 not in this generator'):
        presets.stage_injector_kwargs(G0, stages=['b128'])
    with pytest.raises(dnnlib.UserError, match='--mu'):
        presets.stage_injector_kwargs(G0, mu=1.5)

def test_attach_changes_nothing_until_trained():
    G0, G, E, img = _tiny_setup()
    z = torch.randn([2, G0.z_dim])
    assert torch.equal(G(z, None, noise_mode='const'), G0(z, None, noise_mode='const'))  # no stream: plain G
    ws, _feats = E(img)
    out = streams.run_streams(G, E, img)
    plain = G0.synthesis(ws, noise_mode='const')
    assert torch.allclose(out.img_rec, plain, atol=1e-6, rtol=0)
    assert torch.allclose(out.img_edit, plain, atol=1e-6, rtol=0)
    assert all(float(gF.abs().max()) == 0 for gF in out.fused_rec.values())
    with pytest.raises(dnnlib.UserError, match='already has injectors'):
        attach.attach(G)
    assert torch.equal(attach.detach_gradstyle(G)(z, None, noise_mode='const'), G0(z, None, noise_mode='const'))

def test_trained_stages_change_the_output_including_the_last_stage():
    _G0, G, E, img = _tiny_setup()
    base = streams.run_streams(G, E, img, edit=False).img_rec
    last = attach.stage_modules(G)['b32']
    _perturb(last.grm, seed=3)
    changed = streams.run_streams(G, E, img, edit=False).img_rec
    assert float((changed - base).abs().max()) > 1e-3   # the output block's refinement reaches the image

def test_gradient_routing():
    _G0, G, E, img = _tiny_setup()
    for stage in attach.stage_modules(G).values():
        _perturb(stage, seed=7)
    G.requires_grad_(True)
    out = streams.run_streams(G, E, img, transform=lambda r: {s: torch.flip(F, dims=[3]) for s, F in r.items()})
    # Editing-stream losses: L2 on X_e and L_aligner.
    loss_edit = out.img_edit.square().mean() + sum((out.aligned[s] - out.residuals[s].detach()).abs().mean() for s in out.aligned)
    loss_edit.backward()
    grm_grads = [p.grad for p in attach.grm_parameters(G)]
    assert all(g is None or float(g.abs().max()) == 0 for g in grm_grads), 'editing-stream loss reached a GRM'
    assert any(p.grad is not None and float(p.grad.abs().max()) > 0 for p in attach.gam_parameters(G))
    for p in G.parameters():
        p.grad = None
    out = streams.run_streams(G, E, img, edit=False)
    out.img_rec.square().mean().backward()
    assert all(p.grad is not None and float(p.grad.abs().max()) > 0 for p in attach.grm_parameters(G)[:4])
    assert all(p.grad is None for p in attach.gam_parameters(G)), 'the reconstruction stream used an Aligner'
    # The frozen base generator's weights are part of G; they must not be what the streams train.
    assert all(not p.requires_grad for p in E.parameters())

def test_without_detach_the_editing_loss_does_reach_the_grm():
    # The control for the routing test: the detach is what stops the gradient.
    _G0, G, E, img = _tiny_setup()
    for stage in attach.stage_modules(G).values():
        _perturb(stage, seed=8)
    G.requires_grad_(True)
    out = streams.run_streams(G, E, img, detach_residuals=False)
    out.img_edit.square().mean().backward()
    assert any(p.grad is not None and float(p.grad.abs().max()) > 0 for p in attach.grm_parameters(G))

# The GAM's identity on unwarped residuals and its alignment of warped ones are tested against doing
# nothing (F^ itself) in test_gradstyle_loss.py.

def test_stage_keeps_fp16_dtype_and_checks_inputs():
    stage = GradStyleStage(16, 8, grm_kwargs=dict(hidden_channels=8, num_blocks=1),
        aligner_kwargs=dict(num_layers=1, head_dim=8), gate_kwargs=dict(hidden_channels=8))
    _perturb(stage, seed=1)
    x = torch.randn([2, 16, 8, 8]).half()
    feats = {'b8': torch.randn([2, 8, 8, 8])}
    y, img = stage(x, None, stage='b8', ws=None, stream='rec', features=feats)
    assert y.dtype == torch.float16 and y.shape == x.shape and img is None
    y2, _ = stage(x, None, stage='b8', ws=None, stream='edit', residuals={'b8': torch.randn([2, 16, 8, 8]).half()})
    assert y2.dtype == torch.float16
    assert stage(x, None, stage='b8', ws=None)[0] is x     # no stream: untouched
    with pytest.raises(KeyError, match="no entry for stage 'b8'"):
        stage(x, None, stage='b8', ws=None, stream='rec', features={})
    with pytest.raises(ValueError, match='stream must be one of'):
        stage(x, None, stage='b8', ws=None, stream='both')

def test_gate_fusion_matches_equations():
    gate = GateFusion(4, hidden_channels=3)
    _perturb(gate, scale=0.5, seed=2)
    f, F = torch.randn([2, 4, 5, 5]), torch.randn([2, 4, 5, 5])
    out, g = gate(f, F)
    # Independent: g = sigmoid(conv1(lrelu(conv0([f, F])))) with F.conv2d, then f + g * F.
    h = torch.nn.functional.conv2d(torch.cat([f, F], 1), gate.conv0.weight, gate.conv0.bias, padding=1)
    h = torch.where(h >= 0, h, 0.2 * h)
    g_ref = 1 / (1 + torch.exp(-torch.nn.functional.conv2d(h, gate.conv1.weight, gate.conv1.bias, padding=1)))
    assert torch.allclose(g, g_ref, atol=1e-6) and torch.allclose(out, f + g_ref * F, atol=1e-6)

def test_grm_zero_init_and_resizes_features():
    grm = GradualResidualModule(16, 8, hidden_channels=8, num_blocks=1)
    assert float(grm(torch.randn([1, 8, 4, 4]), torch.randn([1, 16, 8, 8])).abs().max()) == 0
    _perturb(grm, seed=4)
    assert grm(torch.randn([1, 8, 4, 4]), torch.randn([1, 16, 8, 8])).shape == (1, 16, 8, 8)

#----------------------------------------------------------------------------

def test_pickle_round_trip_and_deepcopy(tmp_path):
    _G0, G, E, img = _tiny_setup()
    for stage in attach.stage_modules(G).values():
        _perturb(stage, seed=5)
    net = GradStyleNet.from_modules(G, E)
    ref = net(img)
    path = str(tmp_path / 'gs.pkl')
    legacy.save_network_pkl(dict(G=G, D=testing.tiny_discriminator(), G_ema=G, gradstyle=net), path)
    with open(path, 'rb') as f:
        data = legacy.load_network_pkl(f)
    for clone in [data['gradstyle'], copy.deepcopy(net)]:
        out = clone(img)
        assert torch.equal(out.img_rec, ref.img_rec) and torch.equal(out.img_edit, ref.img_edit)
    assert list(data['G_ema'].synthesis.injectors) == ['b8', 'b16', 'b32']
    assert data['G_ema'].init_kwargs.synthesis_kwargs.injector_kwargs['b16'][0].class_name == presets.STAGE_CLASS_NAME

def test_encoder_generator_mismatch_is_refused():
    G0, G, _E, _img = _tiny_setup()
    E14 = encoder_module.small_encoder_kwargs(32, w_dim=32, feature_channels=32, num_ws=6)
    with pytest.raises(ValueError, match=r'encoder produces W\+ \[6, 32\] but the generator takes \[8, 32\]'):
        GradStyleNet(G_kwargs=dnnlib.EasyDict(class_name='stylegan2_ada_pytorch.networks.Generator', **G.init_kwargs), encoder_kwargs=E14)

def test_stage_class_is_published_as_an_entry_point():
    injectors = registry.list_injectors()
    assert 'gradstyle_stage' in injectors
    assert registry.injector_class_name('gradstyle_stage') == presets.STAGE_CLASS_NAME

def test_apply_direction_shapes():
    ws = torch.zeros([2, 8, 32])
    d = torch.arange(32, dtype=torch.float32)
    assert torch.equal(streams.apply_direction(ws, d, 2.0), (2 * d).expand(2, 8, 32))
    dplus = torch.randn([1, 8, 32])
    assert torch.equal(streams.apply_direction(ws, dplus, -1.0), -dplus.expand(2, 8, 32))
    with pytest.raises(ValueError, match='does not fit'):
        streams.apply_direction(ws, torch.zeros([1, 18, 32]), 1.0)

#----------------------------------------------------------------------------

@pytest.mark.slow
def test_1024_config_shapes_and_forward():
    torch.manual_seed(0)
    G0 = Generator(z_dim=512, c_dim=0, w_dim=512, img_resolution=1024, img_channels=3,
        mapping_kwargs=dict(num_layers=8), synthesis_kwargs=dict(channel_base=32768, channel_max=512, num_fp16_res=4, conv_clamp=256))
    G0 = G0.eval().requires_grad_(False)
    G = attach.attach(G0, preset='paper')
    E = dnnlib.util.construct_class_by_name(**encoder_module.e4e_encoder_kwargs()).eval().requires_grad_(False)
    img = torch.rand([1, 3, 256, 256]) * 2 - 1
    with torch.no_grad():
        out = streams.run_streams(G, E, img)
    assert out.ws.shape == (1, 18, 512)
    assert {s: tuple(F.shape) for s, F in out.residuals.items()} == {'b16': (1, 512, 16, 16), 'b32': (1, 512, 32, 32), 'b64': (1, 512, 64, 64)}
    assert {s: tuple(F.shape) for s, F in out.aligned.items()} == {'b16': (1, 512, 16, 16), 'b32': (1, 512, 32, 32), 'b64': (1, 512, 64, 64)}
    assert out.img_rec.shape == out.img_edit.shape == (1, 3, 1024, 1024)
    assert torch.isfinite(out.img_rec).all() and torch.isfinite(out.img_edit).all()
    plain = G0.synthesis(out.ws, noise_mode='const')
    assert torch.allclose(out.img_rec, plain, atol=1e-5, rtol=0)

#----------------------------------------------------------------------------

#----------------------------------------------------------------------------
# Gate routing (paper 3.4: GRMs with their Gate&Fusion learn from the reconstruction error only).

def _editing_loss_grads(edit_trains_gate):
    _G0, G, E, img = _tiny_setup()
    for stage in attach.stage_modules(G).values():
        _perturb(stage, seed=7)
    G.requires_grad_(True)
    out = streams.run_streams(G, E, img, transform=lambda r: {s: torch.flip(F, dims=[3]) for s, F in r.items()},
        edit_trains_gate=edit_trains_gate)
    loss_edit = out.img_edit.square().mean() + sum((out.aligned[s] - out.residuals[s].detach()).abs().mean() for s in out.aligned)
    loss_edit.backward()
    stages = attach.stage_modules(G).values()
    peak = lambda params: max((float(p.grad.abs().max()) if p.grad is not None else 0.0) for p in params)
    return dict(fusion=peak([p for s in stages for p in s.fusion_parameters()]), grm=peak(attach.grm_parameters(G)),
        gam=peak(attach.gam_parameters(G)))

def test_editing_losses_do_not_train_the_shared_gate_by_default():
    grads = _editing_loss_grads(edit_trains_gate=False)
    print('editing-loss grads (max |g|), default:', grads)
    assert grads['fusion'] == 0 and grads['grm'] == 0 and grads['gam'] > 0     # the Aligner still learns through the gate

def test_edit_trains_gate_flag_keeps_the_ablation():
    grads = _editing_loss_grads(edit_trains_gate=True)
    print('editing-loss grads (max |g|), edit_trains_gate:', grads)
    assert grads['fusion'] > 1e-6 and grads['grm'] == 0 and grads['gam'] > 0

def test_detached_gate_computes_the_same_values():
    _G0, G, E, img = _tiny_setup()
    for stage in attach.stage_modules(G).values():
        _perturb(stage, seed=7)
    G.requires_grad_(True)
    a = streams.run_streams(G, E, img, edit_trains_gate=False)
    b = streams.run_streams(G, E, img, edit_trains_gate=True)
    assert torch.equal(a.img_edit, b.img_edit) and torch.equal(a.img_rec, b.img_rec)

#----------------------------------------------------------------------------
# Inference knobs through inject_kwargs: each switches exactly what it names.

def _trained_like_setup(seed=0):
    _G0, G, E, img = _tiny_setup(seed)
    for stage in attach.stage_modules(G).values():
        _perturb(stage, seed=13)
    return _G0, G, E, img

def test_knob_stages_equals_zeroing_the_other_stages():
    _G0, G, E, img = _trained_like_setup()
    d = torch.randn([1, 32], generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        out = streams.run_streams(G, E, img, direction=d, alpha=2.0, stages={'b16'})
        G_ref = copy.deepcopy(G)
        for name, stage in attach.stage_modules(G_ref).items():
            if name != 'b16':
                stage.grm.out.weight.zero_()       # F = 0: f~ = f, and the Aligner maps F = 0 to F' = 0
                stage.grm.out.bias.zero_()
        ref = streams.run_streams(G_ref, E, img, direction=d, alpha=2.0)
        full = streams.run_streams(G, E, img, direction=d, alpha=2.0)
    assert torch.allclose(out.img_rec, ref.img_rec, atol=1e-6, rtol=0) and torch.allclose(out.img_edit, ref.img_edit, atol=1e-6, rtol=0)
    assert list(out.residuals) == ['b16'] and list(out.aligned) == ['b16']
    assert float((out.img_rec - full.img_rec).abs().max()) > 1e-3      # the other stages did contribute
    with pytest.raises(ValueError, match='stages: b128'):
        streams.run_streams(G, E, img, stages={'b128'})

def test_knob_gate_scale():
    G0, G, E, img = _trained_like_setup()
    d = torch.randn([1, 32], generator=torch.Generator().manual_seed(3))
    zero = {s: 0.0 for s in attach.stage_modules(G)}
    with torch.no_grad():
        out = streams.run_streams(G, E, img, direction=d, alpha=2.0, gate_scale=zero)
        assert torch.equal(out.img_rec, G0.synthesis(out.ws, noise_mode='const'))                 # the plain generator
        assert torch.equal(out.img_edit, G0.synthesis(out.ws_edit, noise_mode='const'))
        # s = 0.5 at one stage equals a network whose gate output is scaled there by hand.
        half = streams.run_streams(G, E, img, direction=d, alpha=2.0, gate_scale={'b16': 0.5})
        G_ref = copy.deepcopy(G)
        gate = attach.stage_modules(G_ref)['b16'].gate
        plain_forward = gate.forward
        def scaled(f, F, scale=1.0):
            _f_new, g = plain_forward(f, F)
            return f + 0.5 * g * F, g
        gate.forward = scaled
        ref = streams.run_streams(G_ref, E, img, direction=d, alpha=2.0)
        full = streams.run_streams(G, E, img, direction=d, alpha=2.0)
    assert torch.allclose(half.img_rec, ref.img_rec, atol=1e-6, rtol=0) and torch.allclose(half.img_edit, ref.img_edit, atol=1e-6, rtol=0)
    assert float((half.img_rec - full.img_rec).abs().max()) > 1e-3

def test_knob_align_false_injects_the_residuals_unaligned():
    _G0, G, E, img = _trained_like_setup()
    d = torch.randn([1, 32], generator=torch.Generator().manual_seed(3))
    warp = lambda r: {s: torch.flip(F, dims=[3]) for s, F in r.items()}
    with torch.no_grad():
        out = streams.run_streams(G, E, img, direction=d, alpha=2.0, transform=warp, align=False)
        G_ref = copy.deepcopy(G)
        for stage in attach.stage_modules(G_ref).values():
            stage.aligner.forward = lambda F_hat, f_edit, mu=None: F_hat          # F' = F^
        ref = streams.run_streams(G_ref, E, img, direction=d, alpha=2.0, transform=warp)
        aligned = streams.run_streams(G, E, img, direction=d, alpha=2.0, transform=warp)
    assert torch.equal(out.img_edit, ref.img_edit) and torch.equal(out.img_rec, aligned.img_rec)
    assert all(torch.equal(out.aligned[s], out.residuals_in[s]) for s in out.aligned)
    assert float((out.img_edit - aligned.img_edit).abs().max()) > 1e-3

def test_knob_mu_overrides_selective_attention():
    _G0, G, E, img = _trained_like_setup()
    d = torch.randn([1, 32], generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        out = streams.run_streams(G, E, img, direction=d, alpha=2.0, mu=1.0)
        G_dense = copy.deepcopy(G)
        for module in G_dense.modules():
            if type(module).__name__ == 'SelectiveAttention':
                assert module.mu == 0.5
                module.mu = 1.0                                                  # dense softmax attention
        ref = streams.run_streams(G_dense, E, img, direction=d, alpha=2.0)
        default = streams.run_streams(G, E, img, direction=d, alpha=2.0)
    assert torch.equal(out.img_edit, ref.img_edit) and torch.equal(out.img_rec, default.img_rec)
    assert float((out.img_edit - default.img_edit).abs().max()) > 1e-4
    with pytest.raises(ValueError, match='mu'):
        streams.run_streams(G, E, img, mu=0.0)

def test_presets_paper_is_c_wide_and_fast_is_lean():
    G0 = testing.tiny_generator()
    paper = presets.stage_injector_kwargs(G0, preset='paper', feature_channels=64)['b32'][0]
    assert paper.grm_kwargs.hidden_channels == 64 and paper.gate_kwargs.hidden_channels == 64     # K = c
    assert paper.aligner_kwargs.head_dim == 64
    fast = presets.stage_injector_kwargs(G0, preset='fast')['b32'][0]
    assert (fast.grm_kwargs.hidden_channels, fast.gate_kwargs.hidden_channels) == (128, 64)
    record = presets.preset_record('paper')
    for key in ['aligner_kwargs.mu', 'aligner_kwargs.num_layers', 'aligner_kwargs.heads', 'aligner_kwargs.ffn_mult',
                'grm_kwargs.hidden_channels', 'grm_kwargs.num_blocks', 'gate_kwargs.hidden_channels']:
        assert record['provenance'][key].startswith('ours'), key
    assert record['provenance']['aligner_kwargs.head_dim'].startswith('paper')
