"""Tests for feature injection: networks.SynthesisNetwork (host side) and injection.py (API).

Covers the checklist of ANCHORS 4.5: zero-init attach is an identity, pickle round trip keeps
injector_kwargs, rebuild with require_all=True, deepcopy keeps injectors, order and prepend,
fp16 in -> fp16 out, unknown stages raise; plus the transient path and error messages.
"""

import copy
import pickle
import re

import pytest
import torch

from stylegan2_ada_pytorch import dnnlib, injection, testing
from stylegan2_ada_pytorch.torch_utils import misc, persistence

#----------------------------------------------------------------------------
# Dummy injectors (persistent ones must be top-level classes of an importable module).

@persistence.persistent_class
class Tagger(injection.Injector):
    """Appends (tag, stage, dtype of x, inject_kwargs keys) to inject_kwargs['log']."""

    def __init__(self, tag):
        super().__init__()
        self.tag = tag

    def forward(self, x, img, *, stage, ws, **inject_kwargs):
        log = inject_kwargs.get('log')
        if log is not None:
            log.append((self.tag, stage, x.dtype, sorted(inject_kwargs)))
        return x, img

@persistence.persistent_class
class AddConst(injection.Injector):
    """x + value (a learned scalar), so a fold can be checked numerically."""

    def __init__(self, value):
        super().__init__()
        self.value = torch.nn.Parameter(torch.full([], float(value)))

    def forward(self, x, img, *, stage, ws, **inject_kwargs):
        return (x.float() + self.value).to(x.dtype), img

@persistence.persistent_class
class DropChannel(injection.Injector):
    """A broken injector: returns one channel less."""

    def forward(self, x, img, *, stage, ws, **inject_kwargs):
        return x[:, :-1], img

@persistence.persistent_class
class Tint(injection.Injector):
    """A correct injector (zero-init scale, fp32 maths, dtype kept)."""

    def __init__(self, channels):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros([channels]))

    def forward(self, x, img, *, stage, ws, **inject_kwargs):
        return (x.float() * (1 + self.weight.reshape(1, -1, 1, 1))).to(x.dtype), img

@persistence.persistent_class
class NotZeroInit(Tint):
    def __init__(self, channels):
        super().__init__(channels)
        torch.nn.init.ones_(self.weight)

@persistence.persistent_class
class NoContextKwargs(Tint):
    def forward(self, x, img, *, stage, ws):
        return super().forward(x, img, stage=stage, ws=ws)

@persistence.persistent_class
class LazyGain(Tint):
    """Creates a parameter on its first call: the rebuild path cannot restore it."""

    def forward(self, x, img, *, stage, ws, **inject_kwargs):
        if not hasattr(self, 'gain'):
            self.gain = torch.nn.Parameter(torch.ones([]))
        y, img = super().forward(x, img, stage=stage, ws=ws)
        return (y.float() * self.gain).to(x.dtype), img

@persistence.persistent_class
class Fp32Out(Tint):
    def forward(self, x, img, *, stage, ws, **inject_kwargs):
        return x.float() * (1 + self.weight.reshape(1, -1, 1, 1)), img

class Undecorated(injection.Injector):
    def __init__(self, channels):
        super().__init__()

class PlainModule(torch.nn.Module):
    def __init__(self, channels):
        super().__init__()

    def forward(self, x, img, *, stage, ws, **inject_kwargs):
        return x, img

class Scale(torch.nn.Module):
    def __init__(self, factor):
        super().__init__()
        self.factor = factor

    def forward(self, x, img, *, stage, ws, **inject_kwargs):
        return x * self.factor, img

class Record(torch.nn.Module):
    def __init__(self, name, log):
        super().__init__()
        self.name = name
        self.log = log

    def forward(self, x, img, *, stage, ws, **inject_kwargs):
        self.log.append(self.name)
        return x, img

def spec(cls, **kwargs):
    return dnnlib.EasyDict(class_name=f'{__name__}.{cls.__name__}', **kwargs)

def zero_conv_G(**extra):
    injector_kwargs = {
        'b8': [testing.zero_conv_spec(32)],
        'b16': [testing.zero_conv_spec(16), testing.zero_conv_spec(16)],
        'b32': [testing.zero_conv_spec(8)],
    }
    return testing.tiny_generator(synthesis_kwargs=dict(injector_kwargs=injector_kwargs, **extra))

def randomize(module):
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * 0.1)
    return module

#----------------------------------------------------------------------------

def test_stage_helpers():
    G = testing.tiny_generator()
    assert injection.stage_names(32) == G.synthesis.stages == ['b4', 'b8', 'b16', 'b32']
    assert injection.stage_names(1024)[-1] == 'b1024' and len(injection.stage_names(1024)) == 9
    assert G.synthesis.stage_channels == {f'b{r}': min(256 // r, 32) for r in (4, 8, 16, 32)}
    assert injection.stage_resolution('b64') == 64
    with pytest.raises(ValueError, match='power of two'):
        injection.stage_names(48)
    with pytest.raises(ValueError, match="'b64'"):
        injection.stage_resolution('64')
    assert injection.injector_spec('a.b.C', channels=3) == dict(class_name='a.b.C', channels=3)

def test_base_injector_is_a_noop():
    x, img = torch.randn(2, 4, 8, 8), torch.randn(2, 3, 8, 8)
    out = injection.Injector()(x, img, stage='b8', ws=torch.randn(2, 3, 32), anything=1)
    assert out[0] is x and out[1] is img

def test_zero_init_attach_is_identity():
    G = testing.tiny_generator()
    G_inj = zero_conv_G()
    misc.copy_params_and_buffers(G, G_inj, require_all=False)
    base_names = {name for name, _ in misc.named_params_and_buffers(G)}
    inj_names = {name for name, _ in misc.named_params_and_buffers(G_inj)}
    assert base_names < inj_names
    assert inj_names - base_names == {f'synthesis.injectors.{s}.{i}.conv.{p}' for s, i in
        [('b8', 0), ('b16', 0), ('b16', 1), ('b32', 0)] for p in ('weight', 'bias')}
    z = torch.randn(2, 32)
    torch.testing.assert_close(G_inj(z, None, noise_mode='const'), G(z, None, noise_mode='const'), rtol=0, atol=1e-6)
    # The keys come after every block, before the mapping network.
    keys = list(G_inj.state_dict())
    assert keys.index('synthesis.injectors.b8.0.conv.weight') > keys.index('synthesis.b32.torgb.affine.bias')
    assert keys.index('synthesis.injectors.b32.0.conv.bias') < keys.index('mapping.w_avg')

def test_spec_lives_in_init_kwargs_and_survives_rebuild_and_pickle():
    G = zero_conv_G()
    randomize(G.synthesis.injectors)
    assert G.init_kwargs.synthesis_kwargs.injector_kwargs['b16'][1] == testing.zero_conv_spec(16)
    z = torch.randn(2, 32)
    ref = G(z, None, noise_mode='const')
    G_plain = testing.tiny_generator()
    assert not torch.allclose(ref, G_plain(z, None, noise_mode='const'), atol=1e-3)

    G2 = type(G)(**G.init_kwargs).eval().requires_grad_(False)
    misc.copy_params_and_buffers(G, G2, require_all=True)
    assert [type(m).__name__ for m in G2.synthesis.injectors.b16] == ['ZeroConvInjector'] * 2
    torch.testing.assert_close(G2(z, None, noise_mode='const'), ref, rtol=0, atol=0)

    # Our own pickle with our own global names: plain pickle.loads is acceptable for it.
    G3 = pickle.loads(persistence.dumps(G, toolkit_names=False))  # safe: bytes this test just made
    assert G3.init_kwargs == G.init_kwargs
    torch.testing.assert_close(G3(z, None, noise_mode='const'), ref, rtol=0, atol=0)

def test_deepcopy_keeps_injectors():
    G = zero_conv_G()
    randomize(G.synthesis.injectors)
    G_ema = copy.deepcopy(G)
    assert list(G_ema.synthesis.injectors.keys()) == ['b8', 'b16', 'b32']
    assert all(torch.equal(a, b) for a, b in zip(G.state_dict().values(), G_ema.state_dict().values()))
    assert G_ema.synthesis.injectors.b16[0] is not G.synthesis.injectors.b16[0]

def test_unknown_stage_raises_at_construction_and_register():
    with pytest.raises(ValueError, match=r"unknown stage 'b64'.*b4, b8, b16, b32"):
        testing.tiny_generator(synthesis_kwargs=dict(injector_kwargs={'b64': [testing.zero_conv_spec(8)]}))
    G = testing.tiny_generator()
    with pytest.raises(ValueError, match=r"register_injector: unknown stage '16'"):
        G.synthesis.register_injector('16', Scale(1.0))
    with pytest.raises(TypeError, match='torch.nn.Module'):
        G.synthesis.register_injector('b16', lambda x, img, **kw: (x, img))
    with pytest.raises(TypeError, match='must be a list'):
        testing.tiny_generator(synthesis_kwargs=dict(injector_kwargs={'b16': testing.zero_conv_spec(16)}))
    with pytest.raises(TypeError, match='class_name'):
        testing.tiny_generator(synthesis_kwargs=dict(injector_kwargs={'b16': [dict(channels=16)]}))

def test_order_persistent_then_transient_with_prepend():
    G = testing.tiny_generator(synthesis_kwargs=dict(injector_kwargs={'b16': [spec(Tagger, tag='p0'), spec(Tagger, tag='p1')]}))
    log = []
    rec = []
    h1 = G.synthesis.register_injector('b16', Record('a1', rec))
    h2 = G.synthesis.register_injector('b16', Record('pre1', rec), prepend=True)
    h3 = G.synthesis.register_injector('b16', Record('a2', rec))
    h4 = G.synthesis.register_injector('b16', Record('pre2', rec), prepend=True)
    G(torch.randn(1, 32), None, inject_kwargs=dict(log=log))
    assert rec == ['pre2', 'pre1', 'a1', 'a2']
    assert [entry[0] for entry in log] == ['p0', 'p1']
    labels = [label.split(' ')[0] for label, _ in G.synthesis.injector_chain('b16')]
    assert labels[2:4] == ['injectors.b16.0', 'injectors.b16.1']
    for h in (h1, h2, h3, h4):
        h.remove()

class Grab(torch.nn.Module):
    def __init__(self, key, seen):
        super().__init__()
        self.key = key
        self.seen = seen

    def forward(self, x, img, *, stage, ws, **inject_kwargs):
        self.seen[self.key] = x.clone()
        return x, img

def test_injectors_fold_in_order():
    # Each injector of a stage receives the previous one's result.
    G = testing.tiny_generator()
    seen = {}
    z = torch.randn(1, 32)
    handles = [G.synthesis.register_injector('b32', AddConst(1.0)),
        G.synthesis.register_injector('b32', Scale(2.0)),
        G.synthesis.register_injector('b32', Grab('after', seen)),
        G.synthesis.register_injector('b32', Grab('before', seen), prepend=True)]
    G(z, None, noise_mode='const')
    torch.testing.assert_close(seen['after'], (seen['before'] + 1) * 2)
    for h in handles:
        h.remove()
    # Prepended injectors run latest first: Grab, Scale, AddConst, then the appended Grab.
    handles = [G.synthesis.register_injector('b32', AddConst(1.0), prepend=True),
        G.synthesis.register_injector('b32', Scale(2.0), prepend=True),
        G.synthesis.register_injector('b32', Grab('before2', seen), prepend=True),
        G.synthesis.register_injector('b32', Grab('after2', seen))]
    G(z, None, noise_mode='const')
    torch.testing.assert_close(seen['after2'], seen['before2'] * 2 + 1)
    for h in handles:
        h.remove()

def test_inject_kwargs_reach_every_injector():
    stages = ['b4', 'b8', 'b16', 'b32']
    G = testing.tiny_generator(synthesis_kwargs=dict(injector_kwargs={s: [spec(Tagger, tag=s)] for s in stages}))
    log = []
    extra = dict(stream='rec', features={'b16': torch.zeros(1)})
    G(torch.randn(2, 32), None, inject_kwargs=dict(log=log, **extra))
    assert [(tag, stage) for tag, stage, _, _ in log] == [(s, s) for s in stages]
    assert all(keys == ['features', 'log', 'stream'] for _, _, _, keys in log)
    log.clear()
    G.synthesis(G.mapping(torch.randn(2, 32), None), inject_kwargs=dict(log=log))
    assert len(log) == 4
    with pytest.raises(ValueError, match='stage'):
        G(torch.randn(2, 32), None, inject_kwargs=dict(stage='b4'))
    with pytest.raises(TypeError, match='inject_kwargs must be a dict'):
        G(torch.randn(2, 32), None, inject_kwargs=[('log', log)])

def test_fp16_in_fp16_out():
    x = torch.randn(2, 16, 16, 16).half()
    img = torch.randn(2, 3, 16, 16)
    y, img2 = testing.ZeroConvInjector(16)(x, img, stage='b16', ws=None)
    assert y.dtype == torch.float16 and img2.dtype == torch.float32 and torch.equal(y, x)
    # A generator with fp16 top blocks, forced to run them in fp16 on the CPU.
    G = testing.tiny_generator(synthesis_kwargs=dict(num_fp16_res=2, conv_clamp=256,
        injector_kwargs={s: [spec(Tagger, tag=s), testing.zero_conv_spec(c)] for s, c in [('b8', 32), ('b16', 16), ('b32', 8)]}))
    log = []
    img = G(torch.randn(2, 32), None, noise_mode='const', force_fp32=False, inject_kwargs=dict(log=log))
    assert img.dtype == torch.float32
    assert [(stage, dtype) for _, stage, dtype, _ in log] == [('b8', torch.float32), ('b16', torch.float16), ('b32', torch.float16)]
    log.clear()
    G(torch.randn(2, 32), None, noise_mode='const', inject_kwargs=dict(log=log))     # CPU default: fp32 everywhere
    assert {dtype for _, _, dtype, _ in log} == {torch.float32}

def test_wrong_output_raises_clear_error():
    class Upcast(torch.nn.Module):
        def forward(self, x, img, *, stage, ws, **kw):
            return x.float(), img
    class Crop(torch.nn.Module):
        def forward(self, x, img, *, stage, ws, **kw):
            return x[:, :-1], img
    class Single(torch.nn.Module):
        def forward(self, x, img, *, stage, ws, **kw):
            return x
    G = testing.tiny_generator(synthesis_kwargs=dict(num_fp16_res=2, conv_clamp=256))
    z = torch.randn(1, 32)
    with G.synthesis.register_injector('b16', Crop()):
        with pytest.raises(RuntimeError, match=r'injector transient #\d+ \(Crop\) at stage b16 changed x from \[1, 16, 16, 16\] float32 to \[1, 15, 16, 16\]'):
            G(z, None)
    with G.synthesis.register_injector('b32', Upcast()):
        with pytest.raises(RuntimeError, match=r'\(Upcast\) at stage b32 changed x from .* float16 to .* float32'):
            G(z, None, force_fp32=False)
    with G.synthesis.register_injector('b8', Single()):
        with pytest.raises(TypeError, match=r'\(Single\) at stage b8 must return a pair'):
            G(z, None)
    G_bad = testing.tiny_generator(synthesis_kwargs=dict(injector_kwargs={'b8': [testing.zero_conv_spec(32), spec(DropChannel)]}))
    with pytest.raises(RuntimeError, match=r'injector injectors\.b8\.1 \(DropChannel\) at stage b8 changed x from \[1, 32, 8, 8\] float32 to \[1, 31, 8, 8\] float32'):
        G_bad(z, None)

def test_transient_handles():
    G = testing.tiny_generator()
    rec = []
    z = torch.randn(1, 32)
    assert not G.synthesis.has_transient_injectors()
    keys = list(G.state_dict())
    dict_keys = set(G.synthesis.__dict__)
    h = G.synthesis.register_injector('b8', Record('r', rec))
    assert isinstance(h, injection.InjectorHandle) and G.synthesis.has_transient_injectors()
    assert list(G.state_dict()) == keys                      # not a submodule
    # Neither pickled nor deep-copied.
    assert not copy.deepcopy(G).synthesis.has_transient_injectors()
    assert not pickle.loads(persistence.dumps(G, toolkit_names=False)).synthesis.has_transient_injectors()  # safe: bytes this test just made
    G(z, None)
    assert rec == ['r']
    h.remove()
    h.remove()                                              # idempotent
    G(z, None)
    assert rec == ['r'] and not G.synthesis.has_transient_injectors()
    assert set(G.synthesis.__dict__) == dict_keys            # back to the plain state
    with G.synthesis.register_injector('b32', Record('ctx', rec)) as handle:
        assert handle.stage == 'b32'
        G(z, None)
    G(z, None)
    assert rec == ['r', 'ctx']
    assert not G.synthesis.has_transient_injectors()

def test_no_injector_means_no_injection_machinery():
    G = testing.tiny_generator()
    assert G.synthesis._injector_plan() is None
    assert 'injectors' not in G.synthesis._modules
    # inject_kwargs is accepted (and unused) when nothing is registered.
    z = torch.randn(1, 32)
    torch.testing.assert_close(G(z, None, noise_mode='const', inject_kwargs=dict(a=1)), G(z, None, noise_mode='const'))

#----------------------------------------------------------------------------

def test_gradients_reach_persistent_injectors_only_when_enabled():
    G = zero_conv_G()
    G.synthesis.injectors.requires_grad_(True)
    G(torch.randn(2, 32), None, noise_mode='const').square().sum().backward()
    grads = {name: p.grad for name, p in G.named_parameters() if p.requires_grad}
    assert set(grads) == {f'synthesis.injectors.{s}.{i}.conv.{p}' for s, i in
        [('b8', 0), ('b16', 0), ('b16', 1), ('b32', 0)] for p in ('weight', 'bias')}
    # x after the last block is not used any more (img already holds its ToRGB), so an injector at
    # the final stage can only change the output through img: it gets no gradient here.
    for name, g in grads.items():
        assert (g is None) if '.b32.' in name else (g.abs().sum() > 0), name

#----------------------------------------------------------------------------
# Non-persistent injectors fail when built; attach_injectors; testing.check_injector.

def test_non_persistent_injector_fails_at_construction_saying_what_to_add():
    with pytest.raises(TypeError, match=r'Undecorated is not a persistent class; add the decorator @persistence.persistent_class '
            r'\(from stylegan2_ada_pytorch.torch_utils import persistence\) above "class Undecorated"'):
        Undecorated(16)
    for cls in (Undecorated, PlainModule):
        with pytest.raises(TypeError, match=rf"injector_kwargs\['b16'\]\[0\]: tests.toolkit.test_injection.{cls.__name__} is not a "
                r'persistent class; add the decorator @persistence.persistent_class'):
            testing.tiny_generator(synthesis_kwargs=dict(injector_kwargs={'b16': [spec(cls, channels=16)]}))
    G = testing.tiny_generator()
    with G.synthesis.register_injector('b16', PlainModule(16)):      # the transient path takes any module
        G(torch.randn(1, 32), None)

def test_attach_injectors_copies_every_weight_and_leaves_G_alone():
    G0 = randomize(testing.tiny_generator())
    G = injection.attach_injectors(G0, {'b8': [spec(AddConst, value=0.5)]})
    randomize(G.synthesis.injectors)
    before = {name: t.clone() for name, t in G.state_dict().items()}
    G2 = injection.attach_injectors(G, {'b16': [spec(Tint, channels=16)], 'b8': [spec(Tint, channels=32)]})
    assert G.state_dict().keys() == before.keys() and all(torch.equal(G.state_dict()[n], t) for n, t in before.items())
    for name, tensor in G.state_dict().items():
        assert torch.equal(G2.state_dict()[name], tensor), name                  # every weight copied
    assert [type(m).__name__ for m in G2.synthesis.injectors.b8] == ['AddConst', 'Tint']
    assert G2.init_kwargs.synthesis_kwargs.injector_kwargs['b16'] == [spec(Tint, channels=16)]
    assert not G2.training and not any(p.requires_grad for p in G2.parameters())
    ws = torch.randn([2, G.num_ws, G.w_dim])
    torch.testing.assert_close(G2.synthesis(ws, noise_mode='const'), G.synthesis(ws, noise_mode='const'), rtol=0, atol=1e-6)
    plain = injection.detach_injectors(G2)
    assert 'injectors' not in plain.synthesis._modules and 'injector_kwargs' not in plain.init_kwargs.synthesis_kwargs
    assert torch.equal(plain.synthesis(ws, noise_mode='const'), G0.synthesis(ws, noise_mode='const'))
    with pytest.raises(ValueError, match="attach_injectors: unknown stage 'b64'"):
        injection.attach_injectors(G, {'b64': [spec(Tint, channels=8)]})

@pytest.fixture
def declared(fake_entry_points):
    """The test injectors declared the way a plugin declares them (the safe loader needs that)."""
    names = ['Tint', 'NotZeroInit', 'NoContextKwargs', 'LazyGain', 'Fp32Out']
    fake_entry_points(*[(n.lower(), f'{__name__}:{n}', 'gradstyle-tests') for n in names], keep_installed=True)

ALL_CHECKS = ['persistent', 'attach', 'extra inject_kwargs', 'zero-init identity', 'deepcopy', 'rebuild require_all',
    'pickle round trip', 'fp16 in, fp16 out']

def test_check_injector_passes_good_injectors(declared):
    assert testing.check_injector(spec(Tint, channels=16), stage='b16') == ALL_CHECKS
    assert testing.check_injector(testing.zero_conv_spec(32), stage='b8') == ALL_CHECKS
    assert testing.check_injector(testing.zero_conv_spec(32), stage='b4') == ALL_CHECKS[:-1]   # b4 never runs in fp16

@pytest.mark.parametrize('cls, check, message', [
    (Undecorated, 'persistent', 'is not a persistent class; add @persistence.persistent_class'),
    (NoContextKwargs, 'extra inject_kwargs', r"unexpected keyword argument '_check_injector_extra'; forward must take"),
    (NotZeroInit, 'zero-init identity', r'outputs differ by [0-9.e+-]+ \(max abs, tolerance 1e-05\)'),
    (LazyGain, 'rebuild require_all', 'outputs differ by'),
    (Fp32Out, 'fp16 in, fp16 out', r'changed x from \[2, 16, 16, 16\] float16 to \[2, 16, 16, 16\] float32'),
])
def test_check_injector_names_the_broken_contract(declared, cls, check, message):
    with pytest.raises(testing.InjectorCheckError, match=rf'check_injector\(tests.toolkit.test_injection.{cls.__name__} at b16\): '
            rf'{re.escape(check)}: .*{message}'):
        testing.check_injector(spec(cls, channels=16), stage='b16')

def test_check_injector_needs_the_class_declared(fake_entry_points):
    fake_entry_points()
    with pytest.raises(testing.InjectorCheckError, match=r'pickle round trip: UnsafePickleError: .*refusing class_name '
            r"'tests.toolkit.test_injection.Tint'.*declare the class in the \"stylegan2_ada_pytorch.injectors\" entry-point group"):
        testing.check_injector(spec(Tint, channels=16), stage='b16')

#----------------------------------------------------------------------------
