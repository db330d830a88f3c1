"""Configuration of gradstyle-train: the toolkit's training_loop kwargs for GradStyle (section 3.4).

`setup_training_config(**opts)` reads the input files (it writes nothing), checks that they fit
together, and returns `(desc, args, init)`: the run-dir description, the training_loop kwargs, and
the initial networks (G, D, G_ema with GradStyle attached, and the encoder) that the launcher saves
to a temporary pickle the loop resumes from. Every problem is a `UserError` naming the flag.

What trains: `G_trainable` selects GradStyle's stages (`synthesis.injectors.*`); G's own weights
and the encoder (an extra module of the loop, carried in every snapshot) stay frozen; D is
fine-tuned in its own phases. The G optimiser is Adam with Lookahead.

Every value the paper does not give is ours; `TRAINING_PROVENANCE` (and `presets.PROVENANCE` for the
network widths) says where each default came from, and the builder records both in
`snapshot_extra_data.gradstyle_config.provenance` (so in training_options.json and every snapshot),
next to the requested and the effective loss weights (a term without its weight file is off).
"""

import copy
import os

import torch

from stylegan2_ada_pytorch import dnnlib, legacy
from stylegan2_ada_pytorch.dnnlib import UserError
from gradstyle_plugin import attach, image_losses, pairing, presets, transforms
from gradstyle_plugin import encoder as encoder_module

#----------------------------------------------------------------------------

COMMON_KEYS = ('c_dim', 'img_resolution', 'img_channels')     # the loop passes these from the dataset
LOSS_CLASS = 'gradstyle_plugin.loss.GradStyleLoss'
GRID_FUNC = 'gradstyle_plugin.snapshot_grid.save_stream_grid'

# Where the training defaults come from ('paper' = stated in the paper; 'ours' = our choice, with
# the nearest public default). The network widths are in presets.PROVENANCE.
TRAINING_PROVENANCE = {
    'lr':               'ours: 1e-4 (e4e/HFGI learning rate; the paper: "Adam ... with LookAhead", no values); D uses it too',
    'betas':            'ours: Adam defaults (0.9, 0.999)',
    'lookahead_k':      'ours: 5 (the Lookahead paper\'s default)',
    'lookahead_alpha':  'ours: 0.5 (the Lookahead paper\'s default)',
    'batch':            'ours: 4 (e4e\'s default; HFGI\'s train.sh uses 8)',
    'kimg':             'ours: 100',
    'ema_kimg':         'ours: 0 (snapshots hold the trained weights; the paper mentions no EMA)',
    'perspective':      'ours: 0.15 (HFGI\'s distortion_scale; the paper cites Wang et al. 2022 without values)',
    'perspective_p':    'ours: 0.8 (HFGI\'s aug_rate default; its train.sh passes 0.9)',
    'perspective_mode': 'ours: inward (torchvision RandomPerspective, as HFGI); two-sided is an ablation',
    'l2':               'paper: weight 1 (eq. 15)',
    'lpips':            'ours: 0.8 (e4e\'s value; the paper follows Tov et al. 2021 but gives no weight)',
    'id':               'ours: 0.1 (e4e\'s value for faces)',
    'adv':              'ours: 0.1',
    'lf':               'ours: 0.01',
    'aligner':          'ours: 1.0',
    'l1_normalisation': 'paper: per-stage L1 sums (eq. 5, 10); ours: divided by one constant, the largest stage\'s C*H*W',
    'r1_gamma':         'ours: 10 (e4e\'s / StyleGAN2\'s R1 weight; the paper gives no D loss details)',
    'loss_res':         'ours: 256 for >= 256 px generators (e4e/HFGI face_pool), the full resolution below',
    'edit_trains_gate': 'paper reading: False (GRMs with their Gate&Fusion learn from the reconstruction error only)',
}

def _load_snapshot(path, flag):
    if path is None:
        raise UserError(f'{flag}: required')
    if not os.path.isfile(path):
        raise UserError(f'{flag}: no such file: {path}')
    try:
        with open(path, 'rb') as f:
            return legacy.load_network_pkl(f)
    except (legacy.UnsafePickleError, legacy.NetworkPickleError, ValueError, KeyError) as err:
        raise UserError(f'{flag}: {err}')

def check_batch(batch, batch_gpu, gpus):
    """The per-process batch (--batch-gpu, default --batch / --gpus) after checking the three flags agree."""
    if not (gpus >= 1 and gpus & (gpus - 1) == 0):
        raise UserError('--gpus must be a power of two')
    if batch < 1 or batch % gpus != 0:
        raise UserError('--batch must be at least 1 and divisible by --gpus')
    batch_gpu = batch // gpus if batch_gpu is None else batch_gpu
    if (batch // gpus) % batch_gpu != 0:
        raise UserError('--batch-gpu must divide --batch / --gpus')
    return batch_gpu

def open_image_dataset(data):
    """(dataset, training_set_kwargs) of the --data folder or zip (unlabelled, no x-flips); UserError naming --data."""
    if data is None or not os.path.exists(data):
        raise UserError(f'--data: no such folder or zip: {data}')
    kwargs = dnnlib.EasyDict(class_name='stylegan2_ada_pytorch.training.dataset.ImageFolderDataset', path=data,
        use_labels=False, xflip=False)
    try:
        dataset = dnnlib.util.construct_class_by_name(**kwargs)
    except (IOError, ValueError) as err:
        raise UserError(f'--data: {err}')
    kwargs.resolution = dataset.resolution
    return dataset, kwargs

def load_encoder(path):
    """An E4EEncoder from an e4e checkpoint (.pt) or from a pickle holding an `encoder` entry."""
    if path is None:
        raise UserError('--encoder: required (an e4e checkpoint such as e4e_ffhq_encode.pt, or a pickle with an encoder)')
    if not os.path.isfile(path):
        raise UserError(f'--encoder: no such file: {path}')
    with open(path, 'rb') as f:
        head = f.read(4)
    try:
        if head == b'PK\x03\x04':
            return encoder_module.load_e4e_checkpoint(path)[0]
        data = legacy.load_pkl(path)
    except (legacy.UnsafePickleError, legacy.NetworkPickleError, ValueError, KeyError) as err:
        raise UserError(f'--encoder: {err}')
    if not isinstance(data.get('encoder'), torch.nn.Module):
        raise UserError(f'--encoder: {path} holds no "encoder" entry')
    return data['encoder']

def _kwargs_of(module, drop=COMMON_KEYS):
    kwargs = dnnlib.EasyDict(class_name=f'{type(module).__module__}.{type(module).__name__}', **module.init_kwargs)
    for key in drop:
        kwargs.pop(key, None)
    return kwargs

#----------------------------------------------------------------------------

def _check_fit(G, E, dataset, stages):
    if E.num_ws != G.num_ws or E.w_dim != G.w_dim:
        raise UserError(f'--encoder: produces W+ codes [{E.num_ws}, {E.w_dim}] but the --network generator takes [{G.num_ws}, {G.w_dim}]')
    if dataset.resolution != G.img_resolution or dataset.num_channels != G.img_channels:
        raise UserError(f'--data: images are {dataset.num_channels}x{dataset.resolution}x{dataset.resolution} but the --network '
            f'generator makes {G.img_channels}x{G.img_resolution}x{G.img_resolution}')
    if dataset.resolution < E.img_resolution:
        raise UserError(f'--encoder: takes {E.img_resolution}px inputs, larger than the {dataset.resolution}px --data images')
    missing = [s for s in stages if s not in E.stage_names]
    if missing:
        raise UserError(f'--stages: the encoder has no features for {", ".join(missing)} (it provides {", ".join(E.stage_names)})')

def _initial_networks(network, encoder, resume, preset, stages, mu, seed, force=False):
    """(G, D, G_ema, E) with GradStyle attached; from --resume if given, else --network + --encoder."""
    if resume is not None:
        data = _load_snapshot(resume, '--resume')
        if not attach.stage_modules(data['G']) or not isinstance(data.get('encoder'), torch.nn.Module):
            raise UserError(f'--resume: {resume} is not a gradstyle-train snapshot (no GradStyle stages or no encoder)')
        return data['G'], data['D'], data['G_ema'], data['encoder']
    data = _load_snapshot(network, '--network')
    E = load_encoder(encoder)
    if attach.stage_modules(data['G_ema']):
        raise UserError('--network: already has GradStyle attached; continue that run with --resume instead')
    pairing.check_pairing(data['G_ema'], E, network, encoder, force=force)   # shapes always; the rest unless --force
    # The frozen generator is the pickle's G_ema (the one users invert and edit) in both G and G_ema: the
    # loop copies G into G_ema after every step, so a G built from the pickle's G would overwrite G_ema's
    # mapping and synthesis weights (and with them the fingerprint its editing directions are bound to).
    with torch.random.fork_rng(devices=[]):     # GradStyle's initial weights follow --seed
        torch.manual_seed(seed)
        G = attach.attach(data['G_ema'], preset=preset, stages=stages, mu=mu, feature_channels=E.feature_channels)
    return G, data['D'], copy.deepcopy(G), E

#----------------------------------------------------------------------------

def setup_training_config(
    network=None, encoder=None, data=None, resume=None,                     # Inputs.
    preset='paper', stages=None, mu=None,                                   # Model.
    perspective=0.15, perspective_p=0.8, perspective_mode='inward',         # Misalignment augmentation.
    batch=4, batch_gpu=None, kimg=100, lr=1e-4, gpus=1, snap=10, seed=0,    # Schedule.
    lookahead_k=5, lookahead_alpha=0.5, ema_kimg=0.0, r1_gamma=10.0,
    l2=1.0, lpips=0.8, id=0.1, adv=0.1, lf=0.01, aligner=1.0,              # Loss weights.
    loss_res=None, edit_trains_gate=False,                                  # Loss options.
    lpips_weights=None, id_weights=None, id_domain='auto',                  # Loss networks.
    workers=3, device=None, grid_images=8,                                  # Performance, output.
    force=False,                                                            # Skip the encoder/generator pairing check.
):
    """Build (desc, training_loop kwargs, initial networks). Reads files, writes nothing.

    `init.warnings` lists what the user must hear at start (a loss term that is off).
    """
    batch_gpu = check_batch(batch, batch_gpu, gpus)
    if not 0 <= perspective < 1:
        raise UserError('--perspective must be in [0, 1)')
    if not 0 <= perspective_p <= 1:
        raise UserError('--perspective-p must be in [0, 1]')
    if perspective_mode not in transforms.MODES:
        raise UserError(f'--perspective-mode must be one of {", ".join(transforms.MODES)}')
    dataset, training_set_kwargs = open_image_dataset(data)
    loss_res = image_losses.resolve_loss_resolution(loss_res, dataset.resolution)

    G, D, G_ema, E = _initial_networks(network, encoder, resume, preset, stages, mu, seed, force)
    stage_names = list(attach.stage_modules(G_ema))
    _check_fit(G_ema, E, dataset, stage_names)
    if D is None and adv != 0:
        raise UserError('--network: has no discriminator (rosinality/e4e checkpoints carry none); pass --adv 0 or a pickle with D')
    _check_loss_networks(lpips, lpips_weights, id, id_weights, id_domain)

    args = dnnlib.EasyDict(num_gpus=gpus, random_seed=seed, batch_size=batch, batch_gpu=batch_gpu, total_kimg=kimg,
        kimg_per_tick=max(min(kimg / 10, 4), 0.001), image_snapshot_ticks=snap, network_snapshot_ticks=snap, metrics=[])
    args.training_set_kwargs = training_set_kwargs
    args.data_loader_kwargs = dnnlib.EasyDict(pin_memory=torch.cuda.is_available(), num_workers=workers)
    if workers > 0:
        args.data_loader_kwargs.prefetch_factor = 2
    args.G_kwargs = _kwargs_of(G_ema)
    args.D_kwargs = _kwargs_of(D) if D is not None else _default_D_kwargs(G_ema)
    args.extra_kwargs = dnnlib.EasyDict(encoder=_kwargs_of(E, drop=()))
    args.G_trainable = r'synthesis\.injectors\..*'
    args.D_trainable = '.*' if adv != 0 else '(?!)'     # nothing: D is not used without the adversarial term
    args.G_reg_interval = None
    args.D_reg_interval = 16
    args.G_opt_kwargs = dnnlib.EasyDict(class_name='gradstyle_plugin.optim.Lookahead', lr=lr, betas=[0.9, 0.999], eps=1e-8,
        k=lookahead_k, alpha=lookahead_alpha)
    args.D_opt_kwargs = dnnlib.EasyDict(class_name='torch.optim.Adam', lr=lr, betas=[0.9, 0.999], eps=1e-8)
    effective, warnings = image_losses.effective_weights(l2, lpips, id, lpips_weights, id_weights)
    requested = dnnlib.EasyDict(l2=l2, lpips=lpips, id=id)
    args.loss_kwargs = dnnlib.EasyDict(class_name=LOSS_CLASS, l2_weight=effective.l2, lpips_weight=effective.lpips,
        id_weight=effective.id, adv_weight=adv, f_weight=lf, aligner_weight=aligner, r1_gamma=r1_gamma, loss_res=loss_res,
        perspective=perspective, perspective_p=perspective_p, perspective_mode=perspective_mode, edit_trains_gate=edit_trains_gate,
        lpips_weights=lpips_weights if effective.lpips != 0 else None, id_weights=id_weights if effective.id != 0 else None,
        id_domain=id_domain, requested_weights=requested)
    args.augment_kwargs = None
    args.ema_kimg = ema_kimg
    args.ema_rampup = None
    args.image_grid_kwargs = dnnlib.EasyDict(class_name=GRID_FUNC, num_images=grid_images)
    args.snapshot_extra_data = dict(gradstyle_config=_gradstyle_record(G_ema, E, preset if resume is None else 'resumed',
        stage_names, requested=dict(requested, adv=adv, f=lf, aligner=aligner), effective=dict(effective, adv=adv, f=lf, aligner=aligner),
        loss_res=loss_res))
    if device is not None:
        args.device = device
    if resume is not None:
        args.resume_pkl = resume     # networks and training_state; otherwise the launcher saves `init`
    desc = f'{dataset.name}-gradstyle-{preset}-batch{batch}-kimg{kimg:g}' + ('-resume' if resume else '')
    return desc, args, dnnlib.EasyDict(G=G, D=D, G_ema=G_ema, encoder=E, warnings=warnings)

def _gradstyle_record(G_ema, E, preset, stage_names, requested, effective, loss_res):
    """The plain-data `gradstyle_config` of a run: stages, widths, loss weights and where every value comes from."""
    first = attach.stage_modules(G_ema)[stage_names[0]]
    spec = G_ema.init_kwargs.synthesis_kwargs.injector_kwargs[stage_names[0]][0]
    widths = dict(grm=dict(spec.get('grm_kwargs', {})), gate=dict(spec.get('gate_kwargs', {})), aligner=dict(spec.get('aligner_kwargs', {})),
        aligner_heads=first.aligner.attns[0].num_heads, feature_channels=spec.feature_channels)
    return dict(preset=preset, stages=stage_names, mu=float(first.aligner.attns[0].mu), encoder_num_ws=E.num_ws, widths=widths,
        loss_weights=dict(requested=requested, effective=effective), loss_res=loss_res,
        provenance=dict(**presets.PROVENANCE, **TRAINING_PROVENANCE))

def _default_D_kwargs(G):
    return dnnlib.EasyDict(class_name='stylegan2_ada_pytorch.networks.Discriminator', channel_base=16384, channel_max=512)

def _check_loss_networks(lpips, lpips_weights, id, id_weights, id_domain):
    from gradstyle_plugin import perceptual
    if lpips != 0 and lpips_weights is not None and lpips_weights != 'random' and not os.path.isfile(lpips_weights):
        raise UserError(f'--lpips-weights: no such file: {lpips_weights}')
    if id != 0 and id_weights is not None:
        if not os.path.isfile(id_weights):
            raise UserError(f'--id-weights: no such file: {id_weights}')
        perceptual.build_id_loss(id_weights, domain=id_domain)   # raises a UserError naming --id-weights

#----------------------------------------------------------------------------
