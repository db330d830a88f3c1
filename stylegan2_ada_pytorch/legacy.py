"""Loading and saving network pickles, safely, in the StyleGAN2-ADA-PyTorch toolkit's format.

`load_network_pkl` reads
- snapshots written by NVIDIA's stylegan2-ada-pytorch (2021 and current spellings), NVIDIA's
  stylegan3 repository (its StyleGAN2 networks), by this package, or by forks of networks.py;
- TensorFlow StyleGAN2 / StyleGAN2-ADA pickles (converted without TensorFlow);
- rosinality/stylegan2-pytorch and e4e `.pt` checkpoints (generator only);
and never executes anything stored in the file: pickles go through an allow-listed unpickler
(`_safe_unpickle.py`), persistent objects are rebuilt from this package's classes
(`_rebuild.py`, `_class_allowlist.py`), and torch checkpoints are read with `weights_only=True`.

`save_network_pkl` writes the same snapshot layout NVIDIA's loader reads (global names
`torch_utils.persistence._reconstruct_persistent_obj` and `dnnlib.util.EasyDict`, protocol 4),
atomically.

Command line (like NVIDIA's `legacy.py`):
    python -m stylegan2_ada_pytorch.legacy --source=ffhq-tf.pkl --dest=ffhq.pkl [--force-fp16=1]
"""

import copy
import io
import os

import click
import torch

from . import dnnlib
from ._convert_rosinality import convert_rosinality_state, generator_state, read_checkpoint
from ._convert_tf import convert_tf_pickle, is_tf_pickle
from ._rebuild import rebuild
from ._safe_unpickle import NetworkPickleError, safe_load
from .torch_utils import misc, persistence
from .torch_utils.persistence import UnsafePickleError

__all__ = ['load_network_pkl', 'load_pkl', 'save_network_pkl', 'load_generator', 'load_rosinality_generator', 'UnsafePickleError', 'NetworkPickleError']

_ZIP_MAGIC = b'PK\x03\x04'
_LEGACY_TORCH_MAGIC = b'\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19'

#----------------------------------------------------------------------------

def _read_all(f):
    """(bytes, display name) of a path or binary file object."""
    if isinstance(f, (str, os.PathLike)):
        name = os.fspath(f)
        try:
            with open(name, 'rb') as fh:
                return fh.read(), name
        except OSError as err:
            raise NetworkPickleError(f'{name}: cannot open ({err.strerror or err})') from None
    name = getattr(f, 'name', None) or '<network pickle stream>'
    data = f.read()
    if not isinstance(data, bytes):
        raise NetworkPickleError(f'{name}: the file must be opened in binary mode')
    return data, str(name)

def _networks():
    from . import networks
    return networks

def _is_torch_checkpoint(data):
    return data.startswith(_ZIP_MAGIC) or data.startswith(_LEGACY_TORCH_MAGIC)

#----------------------------------------------------------------------------

def load_network_pkl(f, force_fp16=False):
    """Load a network snapshot without running any code stored in it.

    `f` is a path or a binary file object (e.g. from `dnnlib.util.open_url`). Returns a dict with
    `G`, `D`, `G_ema` (modules in eval mode with requires_grad False, as in the file),
    `training_set_kwargs` and `augment_pipe` (None when absent), plus any further entries of the
    file. rosinality/e4e checkpoints give `G` and `G_ema` (D is None).

    Example:
        >>> from stylegan2_ada_pytorch import dnnlib, legacy
        >>> with dnnlib.util.open_url('ffhq.pkl') as f:
        ...     G = legacy.load_network_pkl(f)['G_ema']
        >>> img = G(torch.randn([1, G.z_dim]), None, noise_mode='const')

    `force_fp16=True` rebuilds G, G_ema and D with num_fp16_res=4 and conv_clamp=256.
    Raises UnsafePickleError for a global or class outside the allow-list and NetworkPickleError
    for a truncated/corrupt file or one whose tensors do not fit our networks (one-line messages).
    """
    data, name = _read_all(f)
    if _is_torch_checkpoint(data):
        result = _load_rosinality(data, name)
    else:
        obj = safe_load(io.BytesIO(data), name)
        result = _to_snapshot(obj, name)
    result.setdefault('training_set_kwargs', None)
    result.setdefault('augment_pipe', None)
    _validate(result, name)
    if force_fp16:
        result = _force_fp16(result)
    return result

def load_pkl(f):
    """Safely load a dict pickle of persistent modules and plain data, without the snapshot checks.

    For files that hold other networks than G/D/G_ema (e.g. `dict(encoder=E)`); same allow-list and
    rebuild rules as load_network_pkl.

    Example:
        >>> E = legacy.load_pkl('encoder.pkl')['encoder']
    """
    data, name = _read_all(f)
    if _is_torch_checkpoint(data):
        raise NetworkPickleError(f'{name}: this is a torch checkpoint (.pt), not a pickle')
    return _rebuild_dict(safe_load(io.BytesIO(data), name), name)

def _rebuild_dict(obj, name):
    if not isinstance(obj, dict):
        raise NetworkPickleError(f'{name}: not a network snapshot (top level is a {type(obj).__name__}, expected a dict)')
    try:
        return dict(rebuild(obj))
    except (NetworkPickleError, UnsafePickleError) as err:
        raise type(err)(f'{name}: {err}') from None

def _to_snapshot(obj, name):
    if is_tf_pickle(obj):
        try:
            return convert_tf_pickle(obj, _networks())
        except (ValueError, UnsafePickleError) as err:
            raise type(err)(f'{name}: {err}') from None
    return _rebuild_dict(obj, name)

def _validate(result, name):
    for key in ('G', 'D', 'G_ema'):
        if key not in result:
            raise NetworkPickleError(f'{name}: snapshot has no {key!r} entry')
        if not isinstance(result[key], torch.nn.Module) and not (key == 'D' and result[key] is None):
            raise NetworkPickleError(f'{name}: {key!r} is a {type(result[key]).__name__}, not a network')
    if not isinstance(result['training_set_kwargs'], (dict, type(None))):
        raise NetworkPickleError(f'{name}: training_set_kwargs is neither a dict nor None')
    if not isinstance(result['augment_pipe'], (torch.nn.Module, type(None))):
        raise NetworkPickleError(f'{name}: augment_pipe is neither a network nor None')

#----------------------------------------------------------------------------

def _fp16_rebuild(module, kwargs_path):
    """Rebuild `module` with num_fp16_res=4, conv_clamp=256 at `kwargs_path`; None if unchanged."""
    kwargs = module.init_kwargs
    target = kwargs
    for key in kwargs_path:
        target = target.setdefault(key, dnnlib.EasyDict())
    if target.get('num_fp16_res') == 4 and target.get('conv_clamp') == 256:
        return None
    target['num_fp16_res'], target['conv_clamp'] = 4, 256
    return misc.rebuild_module(module, kwargs)

def _force_fp16(result):
    for key, path in (('G', ['synthesis_kwargs']), ('G_ema', ['synthesis_kwargs']), ('D', [])):
        if result.get(key) is not None:
            new = _fp16_rebuild(result[key], path)
            if new is not None:
                result[key] = new
    return result

def load_generator(network_pkl, device='cpu', flag='--network'):
    """G_ema of a network file or URL (any format load_network_pkl reads), on `device`, in eval mode.

    Errors are dnnlib.UserError naming `flag` (one line), for command-line tools.

    Example:
        >>> G = legacy.load_generator('ffhq.pkl', device='cuda')
    """
    try:
        with dnnlib.util.open_url(network_pkl, flag=flag) as f:
            data = load_network_pkl(f)
    except (UnsafePickleError, ValueError, KeyError, EOFError) as err:
        raise dnnlib.UserError(f'{flag}: {network_pkl}: {err}')
    return data['G_ema'].to(device).eval()

#----------------------------------------------------------------------------

def load_rosinality_generator(f):
    """Convert a rosinality (`g_ema`) or e4e (`state_dict` with `decoder.*`) checkpoint to our Generator.

    Example:
        >>> G = legacy.load_rosinality_generator('stylegan2-ffhq-config-f.pt')
        >>> img = G.synthesis(ws, noise_mode='const')     # ws: [N, 18, 512], same W+ as rosinality
    """
    data, name = _read_all(f)
    if not _is_torch_checkpoint(data):
        raise NetworkPickleError(f'{name}: not a torch.save checkpoint')
    return _load_rosinality(data, name)['G_ema']

def _load_rosinality(data, name):
    ckpt = read_checkpoint(io.BytesIO(data), name)
    sd, latent_avg = generator_state(ckpt, name)
    G_ema = convert_rosinality_state(sd, latent_avg, _networks().Generator, name)
    G = copy.deepcopy(G_ema)
    if isinstance(ckpt, dict) and isinstance(ckpt.get('g'), dict):
        G = convert_rosinality_state(dict(ckpt['g']), latent_avg, _networks().Generator, name)
    return dict(G=G, D=None, G_ema=G_ema)

#----------------------------------------------------------------------------

def _check_no_transient_injectors(data):
    for key, value in data.items():
        synthesis = getattr(value, 'synthesis', None)
        check = getattr(synthesis, 'has_transient_injectors', None)
        if callable(check) and check():
            raise ValueError(f'save_network_pkl: {key} has injectors registered with register_injector() that are not in '
                'its injector_kwargs; remove them, or rebuild with synthesis_kwargs.injector_kwargs to make them persistent')

def save_network_pkl(data, path):
    """Write a snapshot dict (G, D, G_ema, training_set_kwargs, augment_pipe, ...) to `path`.

    The file is written to a temporary file in the same directory and renamed, so a crash never
    leaves a half-written pickle. Networks are stored as they are (call `.eval()`/`.cpu()` on a
    deepcopy first, as the training loop does). The file loads with `load_network_pkl` and with
    NVIDIA's `legacy.load_network_pkl`.

    Example:
        >>> legacy.save_network_pkl(dict(G=G, D=D, G_ema=G_ema, training_set_kwargs=None,
        ...     augment_pipe=None), 'network-snapshot-000000.pkl')
    """
    if not isinstance(data, dict):
        raise TypeError(f'save_network_pkl: data must be a dict, got {type(data).__name__}')
    _check_no_transient_injectors(data)
    with dnnlib.util.atomic_write(path, fsync=True) as f:
        persistence.dump(data, f, protocol=4)

#----------------------------------------------------------------------------

@click.command()
@click.option('--source', help='Input pickle (TF or PyTorch) or rosinality .pt', required=True, metavar='PATH')
@click.option('--dest', help='Output pickle', required=True, metavar='PATH')
@click.option('--force-fp16', help='Force the networks to use FP16', type=bool, default=False, metavar='BOOL', show_default=True)
def convert_network_pickle(source, dest, force_fp16):
    """Convert a network pickle into the toolkit's PyTorch format (no stored code is run).

    Example:

    \b
    python -m stylegan2_ada_pytorch.legacy --source=stylegan2-ffhq-config-f.pkl --dest=ffhq.pkl
    """
    try:
        with dnnlib.util.open_url(source, flag='--source') as f:
            data = load_network_pkl(f, force_fp16=force_fp16)
        save_network_pkl(data, dest)
    except (NetworkPickleError, UnsafePickleError, ValueError, dnnlib.UserError) as err:
        raise click.ClickException(str(err)) from None
    click.echo(f'Saved {dest}')

#----------------------------------------------------------------------------

if __name__ == '__main__':
    convert_network_pickle()  # pylint: disable=no-value-for-parameter

#----------------------------------------------------------------------------
