"""Edit real photos with GradStyle (paper section 3, "after training ... the framework can inverse
images through the Reconstruction Stream and meanwhile conduct attribute editing in the Editing
Stream"), or with the encoder alone (the e4e-only path).

From a notebook:

    >>> from gradstyle_plugin import edit as gse
    >>> editor = gse.load_editor('network-snapshot-000100.pkl')          # GradStyle snapshot
    >>> imgs, names = gse.load_images('photos/', editor.resolution)      # [N, 3, R, R] in [-1, 1]
    >>> out = editor.edit(imgs, 'smile', alphas=[-2, 0, 2])              # name from the registry
    >>> out.img_rec, out.img_edit[2.0]                                   # [N, 3, R, R] each
    >>> gse.edit('me.jpg', editor, 'smile', 2.0)                         # one call, [1, 3, R, R]
    >>> out = editor.composite(imgs, {'smile': 2, 'pose': -1.5})         # several directions in one pass
    >>> editor = gse.load_editor('snapshot.pkl', stages=['b16'], gate_scale={'b32': 0.5})   # per-stage knobs

Two modes, chosen from what the files hold:
- 'gradstyle': G with GradStyle stages attached plus its encoder. The reconstruction stream
  (GRMs fed with the encoder features) runs once per batch and gives X_r and the residuals F_m; the
  editing stream (GAMs aligning F_m) runs once per edited code W+ + alpha * dW.
- 'e4e': a plain generator plus an encoder: X_r = G.synthesis(W+), X_e = G.synthesis(edited W+).

The alpha = 0 rule: by default every edit runs the editing stream, also when it leaves the codes
unchanged (alpha = 0 for interfacegan/custom/tensor directions), so an alpha sweep is continuous:
alpha = 0 shows what the trained Aligner does to unwarped residuals, and its distance from the
reconstruction is the aligner's identity error (`Editor.identity_error`, reported by
gradstyle-edit in edits.json). With `alpha0_shortcut=True` an edit with unchanged codes IS the
reconstruction (the very same tensor; the editing stream does not run). A ganspace direction's
alpha SETS the coordinate along its component (see editing_directions/README.md), so its alpha = 0
is a real edit either way.

Composite edits: several (direction, alpha) pairs applied in one pass give W+ + sum of the
offsets Direction.apply(W+, alpha) - W+, each taken from the same inverted codes (for interfacegan
and custom directions: W+ + sum alpha_k dW_k on each direction's layers). Per-stage knobs
(`stages`, `gate_scale`, see stage.py) act on both streams of every call of an Editor.

Everything runs with noise_mode='const' on contiguous NCHW inputs, so a call repeated gives the
same tensors. Editing a batch equals editing its images one by one up to float32 rounding (the
toolkit's synthesis runs a batch as one grouped convolution, whose summation order depends on N:
~5e-7 relative); with the Aligner's top-mu selection a score within rounding of the threshold
can be kept in one batch size and not the other, which moves a few outputs by up to ~3e-4 (see
tests/plugin/test_edit.py for the measurements). Editor is an in-memory
object, never pickled. Errors about the files name the command-line flag (--network, --encoder,
--input) so that the CLI can print them as they are.

Shape letters: N batch, L num_ws, D w_dim, R network resolution, C channels.
"""

import dataclasses
import os

import numpy as np
import PIL.Image
import torch

import editing_directions as ed
from stylegan2_ada_pytorch import dnnlib, legacy
from stylegan2_ada_pytorch.dnnlib import UserError
from stylegan2_ada_pytorch.images import ImageEntry, SkipImage, list_images, read_image
from gradstyle_plugin import pairing
from gradstyle_plugin.attach import stage_modules
from gradstyle_plugin.encoder import load_e4e_checkpoint
from gradstyle_plugin.streams import _knobs, apply_direction, editing_stream, gam_identity_error, reconstruction_stream

__all__ = ['Editor', 'Inversion', 'ImageEntry', 'load_editor', 'edit', 'list_images', 'read_image', 'load_images', 'to_tensor']

NOISE_MODE = 'const'
_ZIP_MAGIC = b'PK\x03\x04'

#----------------------------------------------------------------------------
# Image input: any size and mode -> uint8 [R, R, C] with the network's channel count C
# (listing, decoding and conversions live in the toolkit's `stylegan2_ada_pytorch.images`).

def to_tensor(arrays, device='cpu'):
    """uint8 [N, R, R, C] (or a list of [R, R, C]) -> float32 [N, C, R, R] in [-1, 1] (x / 127.5 - 1)."""
    arr = np.stack(list(arrays)) if not isinstance(arrays, np.ndarray) else arrays
    x = torch.from_numpy(np.ascontiguousarray(arr)).to(device=device, dtype=torch.float32)
    return (x.permute(0, 3, 1, 2) / 127.5 - 1).contiguous()

def load_images(source, resolution, log=print, channels=3):
    """(images [N, channels, R, R] in [-1, 1], names): every readable image of a file, folder or zip.

    `source` may also be a list of paths or PIL images. `channels` is the network's (G.img_channels:
    1 reads grayscale, 3 RGB). Conversions are reported through `log`, one line per converted file;
    unreadable files are reported by name and skipped.
    """
    items = []
    for src in (source if isinstance(source, (list, tuple)) else [source]):
        items += [(f'image {len(items)}', src)] if isinstance(src, PIL.Image.Image) else [(e.name, e) for e in list_images(src)[0]]
    arrays, names = [], []
    for name, item in items:
        try:
            arr, notes = read_image(item, resolution, channels=channels)
        except SkipImage as err:
            log(f'{name}: skipped: {err}')
            continue
        if notes:
            log(f'{name}: {"; ".join(notes)}')
        arrays.append(arr)
        names.append(name)
    if not arrays:
        raise UserError(f'--input: no readable images in {source!r}')
    return to_tensor(arrays), names

#----------------------------------------------------------------------------
# Loading.

def _open_network_file(path, flag, snapshot=True):
    # snapshot=False: any safe dict pickle (e.g. dict(encoder=E)), without the G/D/G_ema checks.
    try:
        with dnnlib.util.open_url(os.fspath(path), flag=flag) as f:
            return legacy.load_network_pkl(f) if snapshot else legacy.load_pkl(f)
    except (legacy.UnsafePickleError, ValueError, KeyError, EOFError) as err:
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UserError(f'{flag}: {message}' if message.startswith(os.fspath(path)) else f'{flag}: {path}: {message}')

def _is_torch_checkpoint(path):
    with open(path, 'rb') as f:
        return f.read(4) == _ZIP_MAGIC

def _load_encoder(path):
    """The encoder of an e4e checkpoint (.pt) or of a pickle holding `encoder` or `gradstyle`."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise UserError(f'--encoder: no such file: {path}')
    if _is_torch_checkpoint(path):
        try:
            return load_e4e_checkpoint(path)[0]
        except ValueError as err:
            raise UserError(f'--encoder: {err}')
    data = _open_network_file(path, '--encoder', snapshot=False)
    if data.get('gradstyle') is not None:
        return data['gradstyle'].encoder
    if data.get('encoder') is None:
        raise UserError(f'--encoder: {path} holds no encoder (expected an e4e .pt checkpoint or a pickle with an "encoder" entry)')
    return data['encoder']

def _check_pair(G, E, network_pkl, encoder_name):
    # One-line errors for an encoder that cannot feed this generator.
    pairing.check_shapes(G, E, network_pkl, encoder_name)
    stages = stage_modules(G)
    need = {s: m.grm.feature_channels for s, m in stages.items()}
    have = {s: E.feature_channels for s in getattr(E, 'stage_names', [])}
    bad = [s for s in need if have.get(s) != need[s]]
    if bad:
        raise UserError(f'--encoder: the GradStyle stages of --network need features {_features(need)} but the encoder gives '
            f'{_features(have) or "none"}')

def _features(table):
    return ', '.join(f'{s} [{c}]' for s, c in table.items())

def load_editor(network_pkl, encoder=None, device=None, alpha0_shortcut=False, stages=None, gate_scale=None, force=False):
    """An Editor from a GradStyle snapshot, or from a plain generator plus an encoder (e4e-only path).

    `network_pkl`: a snapshot written by gradstyle-train (G_ema with GradStyle stages plus
    `encoder`), a pickle holding a `gradstyle` GradStyleNet, or any generator file the toolkit
    loader reads (NVIDIA/TF pickles, rosinality/e4e .pt). `encoder`: an e4e checkpoint (.pt) or a
    pickle holding an `encoder` (or `gradstyle`); it replaces the snapshot's encoder when given.
    With a plain generator the Editor runs in 'e4e' mode (W+ editing, plain synthesis). `stages`
    and `gate_scale` are the per-stage knobs (see Editor). A separate `encoder` file must belong to
    the generator (`pairing.check_pairing`: latent_avg and the reconstruction of a few samples)
    unless `force`; shapes are always checked. Nothing stored in the files is executed. Raises
    UserError (one line naming --network or --encoder).

    Example:
        >>> editor = load_editor('network-snapshot-000100.pkl')              # mode 'gradstyle'
        >>> editor = load_editor('ffhq.pkl', encoder='e4e_ffhq_encode.pt')    # mode 'e4e'
    """
    device = torch.device(device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    data = _open_network_file(network_pkl, '--network')
    net = data.get('gradstyle')
    G = net.G if net is not None else data['G_ema']
    E = _load_encoder(encoder) if encoder is not None else (net.encoder if net is not None else data.get('encoder'))
    if E is None:
        what = 'a GradStyle generator but no encoder' if stage_modules(G) else 'a plain generator'
        raise UserError(f'--encoder: --network {network_pkl} holds {what}; pass --encoder (an e4e .pt checkpoint or a pickle '
            'with an "encoder") to edit with it')
    _check_pair(G, E, network_pkl, encoder or network_pkl)
    if encoder is not None:     # a separate encoder file: is it this generator's? (pairing.check_pairing)
        pairing.check_pairing(G, E, network_pkl, encoder, force=force)
    return Editor(G.to(device).eval().requires_grad_(False), E.to(device).eval().requires_grad_(False), alpha0_shortcut=alpha0_shortcut,
        stages=stages, gate_scale=gate_scale)

#----------------------------------------------------------------------------
# The editor.

@dataclasses.dataclass
class Inversion:
    """What an edit needs from the reconstruction: W+ [N, L, D], X_r [N, C, R, R], {stage: F_m}."""
    ws:         torch.Tensor
    img_rec:    torch.Tensor
    residuals:  dict

class Editor:
    """A loaded generator + encoder that inverts and edits images (in memory, never pickled).

    `mode` is 'gradstyle' (G has GradStyle stages) or 'e4e' (plain G). `resolution` is the image
    size the network takes and makes. `alpha0_shortcut`: return the reconstruction itself for an
    edit that leaves the codes unchanged (default False: run the editing stream, so sweeps are
    continuous; see the module docstring). `stages` (names; only these GradStyle stages inject) and
    `gate_scale` ({stage: s}: f~ = f + s * g * F) are the per-stage inference knobs, used by both
    streams (UserError naming --stages / --gate-scale for a stage G does not have, or in e4e mode).

    Example:
        >>> editor = load_editor('snapshot.pkl', device='cpu')
        >>> img_rec, ws = editor.reconstruct(imgs)                # imgs [N, 3, R, R] in [-1, 1]
        >>> out = editor.edit(imgs, 'age', alphas=[-3, 0, 3])
        >>> out.img_edit[-3.0]                                    # [N, 3, R, R]
    """

    def __init__(self, G, encoder, alpha0_shortcut=False, stages=None, gate_scale=None):
        self.G = G
        self.encoder = encoder
        self.alpha0_shortcut = bool(alpha0_shortcut)
        self.mode = 'gradstyle' if stage_modules(G) else 'e4e'
        self.resolution = int(G.img_resolution)
        self.device = next(G.parameters()).device
        self.knobs = _check_knobs(G, self.mode, stages, gate_scale)

    def _as_images(self, images):
        if not isinstance(images, torch.Tensor):
            return load_images(list(images), self.resolution, channels=self.G.img_channels)[0].to(self.device)
        expected = [self.G.img_channels, self.resolution, self.resolution]
        if images.ndim != 4 or list(images.shape[1:]) != expected:
            raise ValueError(f'images must have shape [N, {", ".join(map(str, expected))}] (values in [-1, 1]); got '
                f'{list(images.shape)}; use load_images() to convert files of other sizes')
        # Contiguous NCHW: a channels-last input would take other conv kernels and round differently.
        return images.to(device=self.device, dtype=torch.float32).contiguous()

    @torch.no_grad()
    def invert(self, images):
        """Encode and run the reconstruction stream once: an Inversion (ws, img_rec, residuals)."""
        img = self._as_images(images)
        ws, features = self.encoder(img)
        if self.mode == 'e4e':
            return Inversion(ws=ws, img_rec=self.G.synthesis(ws, noise_mode=NOISE_MODE), residuals={})
        img_rec, record = reconstruction_stream(self.G, ws, features, noise_mode=NOISE_MODE, **self.knobs)
        return Inversion(ws=ws, img_rec=img_rec, residuals={s: r['F'] for s, r in record.items()})

    def reconstruct(self, images):
        """(img_rec [N, 3, R, R], ws [N, L, D]) of images [N, 3, R, R] in [-1, 1] (or files / PIL images)."""
        inv = self.invert(images)
        return inv.img_rec, inv.ws

    def direction(self, direction, registry_dirs=None, force=False):
        """A Direction from a name (registry lookup, fingerprint checked), a Direction or a tensor."""
        if isinstance(direction, str):
            return ed.resolve(direction, self.G, registry_dirs, force=force)
        if isinstance(direction, ed.Direction):
            direction.check_generator(self.G)
            return direction
        vector = torch.as_tensor(direction, dtype=torch.float32).detach().cpu()
        try:
            apply_direction(torch.zeros([1, self.G.num_ws, self.G.w_dim]), vector, 1.0)
        except ValueError as err:
            raise ed.DirectionError(f'direction tensor: {err}')
        return vector

    @torch.no_grad()
    def identity_error(self, inv):
        """{stage: [N]} |F' - F|_1 / |F|_1 of the Aligner on unwarped residuals at unchanged codes (alpha 0).

        0 is a perfect identity; NaN where F = 0 (an untrained GRM). Empty in 'e4e' mode.
        """
        if self.mode == 'e4e':
            return {}
        return gam_identity_error(self.G, inv.ws, inv.residuals, noise_mode=NOISE_MODE, **self.knobs)

    @staticmethod
    def shift(ws, direction, alpha):
        """W+ codes [N, L, D] moved along one direction (a Direction or a bound tensor) by `alpha`."""
        if isinstance(direction, ed.Direction):
            return direction.apply(ws, float(alpha))
        return apply_direction(ws, direction.to(ws.device), float(alpha))

    def composite_codes(self, ws, edits):
        """W+ codes edited by every (direction, alpha) of `edits` at once: ws + sum of shift(ws, d, a) - ws."""
        edits = list(edits)
        if len(edits) == 1:
            return self.shift(ws, *edits[0])
        return ws + sum(self.shift(ws, d, a) - ws for d, a in edits)

    @torch.no_grad()
    def render(self, inv, ws_edit):
        """img_edit [N, C, R, R] of edited codes: the editing stream on inv's residuals (plain synthesis in 'e4e' mode)."""
        if torch.equal(ws_edit, inv.ws) and (self.alpha0_shortcut or self.mode == 'e4e'):
            return inv.img_rec
        if self.mode == 'e4e':
            return self.G.synthesis(ws_edit, noise_mode=NOISE_MODE)
        return editing_stream(self.G, ws_edit, inv.residuals, noise_mode=NOISE_MODE, **self.knobs)[0]

    def edit_codes(self, inv, direction, alpha):
        """(ws_edit, img_edit) for one alpha on an Inversion (inv.img_rec for unchanged codes with alpha0_shortcut)."""
        ws_edit = self.shift(inv.ws, direction, alpha)
        img = self.render(inv, ws_edit)
        return (inv.ws if img is inv.img_rec else ws_edit), img

    def composite_edit_codes(self, inv, edits):
        """(ws_edit, img_edit) of several bound (direction, alpha) pairs applied in one pass (see composite_codes)."""
        ws_edit = self.composite_codes(inv.ws, edits)
        return ws_edit, self.render(inv, ws_edit)

    def composite(self, images, edits, registry_dirs=None, force=False):
        """Reconstruct once and apply several directions in one pass; returns an EasyDict(ws, img_rec, ws_edit, img_edit).

        `edits`: {direction: alpha} or [(direction, alpha)], each direction a registry name, a
        Direction or a tensor. Example: editor.composite(imgs, {'smile': 2, 'pose': -1.5}).img_edit
        """
        pairs = list(edits.items()) if isinstance(edits, dict) else list(edits)
        bound = [(self.direction(d, registry_dirs, force), float(a)) for d, a in pairs]
        inv = self.invert(images)
        ws_edit, img_edit = self.composite_edit_codes(inv, bound)
        return dnnlib.EasyDict(ws=inv.ws, img_rec=inv.img_rec, ws_edit=ws_edit, img_edit=img_edit)

    def edit(self, images, direction, alphas, registry_dirs=None, force=False):
        """Reconstruct once and edit along `direction` for each alpha; returns an EasyDict.

        `direction`: a registry name, a Direction or a tensor ([D], [1, D], [L, D], [1, L, D]).
        Result: ws [N, L, D], img_rec [N, 3, R, R], ws_edit {alpha: [N, L, D]}, img_edit {alpha: [N, 3, R, R]}
        (alpha keys are floats, in the given order).
        """
        d = self.direction(direction, registry_dirs, force)
        inv = self.invert(images)
        out = dnnlib.EasyDict(ws=inv.ws, img_rec=inv.img_rec, ws_edit={}, img_edit={})
        for alpha in np.atleast_1d(np.asarray(alphas, dtype=np.float64)).tolist():
            out.ws_edit[alpha], out.img_edit[alpha] = self.edit_codes(inv, d, alpha)
        return out

#----------------------------------------------------------------------------

def _check_knobs(G, mode, stages, gate_scale):
    # {stages, gate_scale} for the streams (only those given); UserError naming the flag.
    knobs = {k: v for k, v in dict(stages=stages, gate_scale=gate_scale).items() if v is not None}
    for key in knobs:
        flag = '--' + key.replace('_', '-')
        if mode == 'e4e':
            raise UserError(f'{flag}: the network has no GradStyle stages (e4e mode); per-stage knobs need a GradStyle snapshot')
        try:
            _knobs(G, **{key: knobs[key]})
        except ValueError as err:
            raise UserError(f'{flag}: {str(err).partition(": ")[2]}')
    off = sorted(set(knobs.get('gate_scale', {})) - set(knobs.get('stages', knobs.get('gate_scale', {}))))
    if off:
        raise UserError(f'--gate-scale: {", ".join(off)} switched off by --stages {",".join(knobs["stages"])}; its scale would do nothing')
    return knobs

def edit(images, network, direction, alpha, encoder=None, registry_dirs=None, force=False, device=None):
    """Edit images in one call: returns the edited images [N, 3, R, R] in about [-1, 1].

    `images`: a tensor [N, 3, R, R] in [-1, 1], or a list of PIL images / paths (any size and mode,
    converted as read_image() does). `network`: a snapshot path (see load_editor) or an Editor.
    `direction`: a registry name, a Direction or a tensor. `alpha`: one number.

    Notebook example:
        >>> import PIL.Image
        >>> from gradstyle_plugin.edit import edit, load_editor
        >>> editor = load_editor('network-snapshot-000100.pkl')        # load once, edit many times
        >>> out = edit(['me.jpg'], editor, 'smile', alpha=2.0)
        >>> arr = (out[0].permute(1, 2, 0) * 127.5 + 128).clamp(0, 255).to(torch.uint8).cpu().numpy()
        >>> PIL.Image.fromarray(arr)                                    # shows the edit in Jupyter
    """
    editor = network if isinstance(network, Editor) else load_editor(network, encoder=encoder, device=device)
    if isinstance(images, (str, os.PathLike, PIL.Image.Image)):
        images = [images]
    out = editor.edit(images, direction, [alpha], registry_dirs=registry_dirs, force=force)
    return next(iter(out.img_edit.values()))

#----------------------------------------------------------------------------
