"""GradStyle's dual-stream forward (sections 3.1-3.4) over one frozen generator, through the
toolkit's injection hooks.

    encoding:        W+, T = E(X)                                        (3.1)
    reconstruction:  X_r = G(W+; GRMs fed with T)  -> residuals F_m     (3.2, eq. 1-4)
    editing:         X_e = G(W+ + alpha * dW; GAMs fed with F_m)        (3.3, eq. 6-7)

`run_streams` runs all three. Training switches: `detach_residuals` (the GRMs get no gradient from
editing-stream losses, 3.4), `transform` (a function {stage: F_m} -> {stage: F^_m}, e.g. the
random perspective of 3.4 applied to the residuals before alignment), `edit_trains_gate` (False:
editing-stream losses do not move the shared Gate&Fusion, see `stage.py`), and `edit_ws` / `alpha`
/ `direction` for real edits. Inference knobs, passed to every stage through `inject_kwargs`
(documented in `stage.py`): `stages` (only these stages inject), `gate_scale` ({stage: s}, f~ = f +
s * g * F), `align` (False: inject F^ unaligned), `mu` (Selective Attention kept fraction). The
intermediates the losses need come back in a `StreamOutputs` (an in-memory result, never pickled).

Shape letters: N batch, L num_ws, D w_dim, C channels, R resolution.
"""

import dataclasses
from typing import Callable, Dict, Optional

import torch

#----------------------------------------------------------------------------

@dataclasses.dataclass
class StreamOutputs:
    ws:             torch.Tensor                    # [N, L, D] encoder W+ (latent_avg added).
    img_rec:        torch.Tensor                    # [N, C, R, R] reconstruction stream output X_r.
    residuals:      Dict[str, torch.Tensor]         # Stage -> F_m (GRM output, before the gate).
    gates_rec:      Dict[str, torch.Tensor]         # Stage -> g_m in the reconstruction stream.
    fused_rec:      Dict[str, torch.Tensor]         # Stage -> g_m * F_m (what L_f regularises, eq. 5).
    ws_edit:        Optional[torch.Tensor] = None   # [N, L, D] edited codes.
    img_edit:       Optional[torch.Tensor] = None   # [N, C, R, R] editing stream output X_e.
    residuals_in:   Optional[Dict[str, torch.Tensor]] = None   # Stage -> F^_m fed to the Aligner.
    aligned:        Optional[Dict[str, torch.Tensor]] = None   # Stage -> F'_m (Aligner output).
    gates_edit:     Optional[Dict[str, torch.Tensor]] = None
    fused_edit:     Optional[Dict[str, torch.Tensor]] = None

#----------------------------------------------------------------------------

def encode(encoder, img):
    """W+ [N, L, D] and features {stage: T_m} of images in [-1, 1]."""
    return encoder(img)

def reconstruction_stream(G, ws, features, noise_mode='const', stages=None, gate_scale=None):
    """X_r and the per-stage record {stage: {'F', 'g', 'gF'}} of the GRMs."""
    record = {}
    knobs = _knobs(G, stages=stages, gate_scale=gate_scale)
    img = G.synthesis(ws, noise_mode=noise_mode, inject_kwargs=dict(stream='rec', features=features, record=record, **knobs))
    return img, record

def editing_stream(G, ws_edit, residuals, noise_mode='const', stages=None, gate_scale=None, align=True, mu=None,
                   edit_trains_gate=False):
    """X_e from edited codes, with the GAMs aligning `residuals` {stage: F^_m}; knobs as in `stage.py`."""
    record = {}
    knobs = _knobs(G, stages=stages, gate_scale=gate_scale, align=align, mu=mu, edit_trains_gate=edit_trains_gate)
    img = G.synthesis(ws_edit, noise_mode=noise_mode, inject_kwargs=dict(stream='edit', residuals=residuals, record=record, **knobs))
    return img, record

def gam_identity_error(G, ws, residuals, noise_mode='const', **knobs):
    """{stage: [N]} |F' - F|_1 / |F|_1: how far the GAMs move `residuals` at unchanged codes (0 = identity).

    NaN where F = 0 (an untrained GRM). Example: `gam_identity_error(G, inv.ws, inv.residuals)`.
    """
    _img, record = editing_stream(G, ws, residuals, noise_mode=noise_mode, **knobs)
    return {s: (record[s]['F'] - F).abs().flatten(1).sum(1) / F.abs().flatten(1).sum(1) for s, F in residuals.items()}

def _knobs(G, **knobs):
    # The knobs that differ from the defaults, checked against G's stages (ValueError on a typo).
    names = list(getattr(G.synthesis, 'injectors', None) or {})
    out = {}
    if knobs.get('stages') is not None:
        stages = {knobs['stages']} if isinstance(knobs['stages'], str) else set(knobs['stages'])
        unknown = sorted(stages - set(names))
        if unknown:
            raise ValueError(f'stages: {", ".join(unknown)} not among the GradStyle stages ({", ".join(names)})')
        out['stages'] = stages
    if knobs.get('gate_scale') is not None:
        unknown = sorted(set(knobs['gate_scale']) - set(names))
        if unknown:
            raise ValueError(f'gate_scale: {", ".join(unknown)} not among the GradStyle stages ({", ".join(names)})')
        out['gate_scale'] = {s: float(v) for s, v in knobs['gate_scale'].items()}
    if knobs.get('mu') is not None:
        if not 0 < knobs['mu'] <= 1:
            raise ValueError(f'mu: must be in (0, 1], got {knobs["mu"]}')
        out['mu'] = float(knobs['mu'])
    if knobs.get('align', True) is False:
        out['align'] = False
    if knobs.get('edit_trains_gate', False):
        out['edit_trains_gate'] = True
    return out

def apply_direction(ws, direction, alpha):
    """W+ + alpha * dW with a direction of shape [D], [1, D], [L, D] or [1, L, D] (W or W+)."""
    direction = torch.as_tensor(direction, dtype=ws.dtype, device=ws.device)
    if direction.ndim == 1:
        direction = direction[None, None, :]
    elif direction.ndim == 2:
        direction = direction[None] if direction.shape[0] == ws.shape[1] else direction[:, None, :]
    if direction.shape[-1] != ws.shape[-1] or direction.shape[1] not in (1, ws.shape[1]):
        raise ValueError(f'direction of shape {list(direction.shape)} does not fit W+ codes of shape {list(ws.shape[1:])}')
    return ws + alpha * direction

def run_streams(G, encoder, img, *, edit_ws=None, direction=None, alpha=0.0, transform: Optional[Callable] = None,
                detach_residuals=True, edit=True, noise_mode='const', stages=None, gate_scale=None, align=True, mu=None,
                edit_trains_gate=False):
    """Encode, reconstruct, and (if `edit`) run the editing stream; returns StreamOutputs.

    The edited codes are `edit_ws` if given, else W+ + alpha * direction (alpha = 0 without a
    direction: the self-supervised setting of section 3.4). `stages` and `gate_scale` act on both
    streams, `align` and `mu` on the editing stream (see `stage.py`).

    Example:
        >>> out = run_streams(G, E, img, direction=pose, alpha=3.0)
        >>> out.img_rec, out.img_edit      # reconstruction and edit, [N, 3, R, R] in about [-1, 1]
        >>> run_streams(G, E, img, direction=pose, alpha=3.0, stages={'b16'}, mu=1.0)   # ablation knobs
    """
    ws, features = encode(encoder, img)
    img_rec, rec = reconstruction_stream(G, ws, features, noise_mode=noise_mode, stages=stages, gate_scale=gate_scale)
    out = StreamOutputs(ws=ws, img_rec=img_rec, residuals={s: r['F'] for s, r in rec.items()},
        gates_rec={s: r['g'] for s, r in rec.items()}, fused_rec={s: r['gF'] for s, r in rec.items()})
    if not edit:
        return out
    if edit_ws is None:
        edit_ws = ws if direction is None else apply_direction(ws, direction, alpha)
    residuals_in = {s: (F.detach() if detach_residuals else F) for s, F in out.residuals.items()}
    if transform is not None:
        residuals_in = transform(residuals_in)
    img_edit, ed = editing_stream(G, edit_ws, residuals_in, noise_mode=noise_mode, stages=stages, gate_scale=gate_scale,
        align=align, mu=mu, edit_trains_gate=edit_trains_gate)
    out.ws_edit = edit_ws
    out.img_edit = img_edit
    out.residuals_in = residuals_in
    out.aligned = {s: r['F'] for s, r in ed.items()}
    out.gates_edit = {s: r['g'] for s, r in ed.items()}
    out.fused_edit = {s: r['gF'] for s, r in ed.items()}
    return out

#----------------------------------------------------------------------------
