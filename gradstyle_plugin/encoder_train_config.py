"""Configuration of gradstyle-train-encoder: e4e's encoder training (Tov et al. 2021) as training_loop kwargs.

`setup_encoder_training_config(**opts)` reads the input files (it writes nothing), checks that they
fit together, and returns `(desc, args, init)`: the run-dir description, the training_loop kwargs
and the initial networks (G = G_ema = the generator's G_ema, its D if the file has one, the
encoder, the latent discriminator) that the launcher saves to a temporary pickle the loop starts
from. Every problem is a `UserError` naming the flag.

What trains: the extra modules `encoder` (Ranger or Adam + Lookahead) and `latent_D` (Adam, lazy R1),
in the loop's `extra_phases`; G and D are frozen (they travel in the snapshots so that a snapshot
is also a generator file). `ENCODER_PRESETS` give the architecture and the schedule;
`ENCODER_PROVENANCE` says where every default comes from (e4e's value or ours) and is recorded in
`snapshot_extra_data.encoder_training_config` with the requested and effective loss weights.
"""


import torch

from stylegan2_ada_pytorch import dnnlib
from stylegan2_ada_pytorch.dnnlib import UserError
from gradstyle_plugin import attach, encoder_loss, image_losses, pairing
from gradstyle_plugin import encoder as encoder_module
from gradstyle_plugin.latent_discriminator import LatentDiscriminator
from gradstyle_plugin.train_config import _check_loss_networks, _default_D_kwargs, _kwargs_of, _load_snapshot, check_batch, open_image_dataset

#----------------------------------------------------------------------------

LOSS_CLASS = 'gradstyle_plugin.encoder_loss.E4EEncoderLoss'
GRID_FUNC = 'gradstyle_plugin.encoder_grid.save_reconstruction_grid'
NEVER = '(?!)'                                  # a parameter pattern that matches nothing

# Schedule per preset (kimg = thousands of images). e4e counts steps; at its batch 8 the
# progressive start (20k steps) and step (2k steps per row) are 160 and 16 kimg.
ENCODER_PRESETS = {
    'e4e':   dict(batch=8, kimg=1600, progressive_start=160, progressive_step=16, lr=1e-4),
    'small': dict(batch=8, kimg=20, progressive_start=2, progressive_step=0.5, lr=1e-3),
}
SMALL_FEATURE_CHANNELS = 64                     # ours: ~1.2M parameters at 32 px, ~2.3M at 64 px with w_dim 512
SMALL_MAX_RESOLUTION = 64                       # ours: the small encoder looks at <= 64 px (larger images are area-resized)

ENCODER_PROVENANCE = {
    'preset_e4e':       'e4e: IR-SE-50 encoder, 256 px input, map2style heads (Encoder4Editing)',
    'preset_small':     f'ours: the same structure, 4 groups of 1 unit, c = {SMALL_FEATURE_CHANNELS}, input min(resolution, 64)',
    'latent_avg':       'e4e: W+ = latent_avg + deltas, latent_avg = G.mapping.w_avg (start_from_latent_avg)',
    'batch':            'e4e preset: 8 (e4e\'s training command); small: ours',
    'kimg':             'ours (e4e trains by steps; 1600 kimg = 200k steps at batch 8)',
    'progressive':      'e4e: 20k steps before the first delta, then one row every 2k steps (160 / 16 kimg at batch 8); small: ours',
    'optimizer':        'e4e: Ranger (RAdam + Lookahead k 6, alpha 0.5, betas 0.95/0.999, eps 1e-5, gradient centralisation); '
                        'ours: torch.optim.RAdam as the inner optimiser',
    'lr':               'e4e: 1e-4 (preset e4e); small: ours, 1e-3 (short CPU runs of a ~1M-parameter encoder)',
    'l2':               'e4e: 1.0',
    'lpips':            'e4e: 0.8 (VGG LPIPS from a local --lpips-weights file)',
    'id':               'e4e: 0.1 (ArcFace for faces, MoCo-v2 for other domains; local --id-weights file)',
    'adv':              'e4e: w_discriminator_lambda 0.1',
    'delta':            'e4e: delta_norm_lambda 2e-4, L2 norm of each delta',
    'latent_D':         'e4e: LatentCodesDiscriminator(w_dim, 4 layers), Adam lr 2e-5, R1 gamma 10 every 16 steps',
    'latent_D_input':   'ours: rows 0..k of W+ with latent_avg in both phases (e4e feeds row 0 without latent_avg to its D step)',
    'lazy_r1':          'ours: the toolkit\'s lazy regularisation (lr and betas of latent_D scaled by 16/17)',
    'w_pool':           'e4e: 50 codes (its training command passes --use_w_pool; w_pool_size 50), for real and for fake codes',
    'zero_deltas':      'ours: with progressive training the map2style linear layers of rows 1.. start at zero (e4e: random), '
                        'so rows not trained yet add nothing, in snapshots and exports too',
    'loss_res':         'e4e: the encoder\'s input resolution (256, face_pool)',
    'noise':            'e4e: random noise inputs while training (randomize_noise)',
    'backbone_init':    'e4e: IR-SE-50 from ArcFace model_ir_se50.pth (--backbone-weights); ours: random when not given',
}

#----------------------------------------------------------------------------

def encoder_preset_kwargs(preset, G):
    """E4EEncoder kwargs (with class_name) of `preset` for generator G; UserError if they do not fit."""
    if preset == 'e4e':
        if G.img_resolution < 256:
            raise UserError(f'--preset e4e: the IR-SE-50 encoder takes 256 px images; the --network generator makes '
                f'{G.img_resolution} px (use --preset small)')
        return dnnlib.EasyDict(encoder_module.e4e_encoder_kwargs(num_ws=G.num_ws, w_dim=G.w_dim), img_channels=G.img_channels)
    if preset == 'small':
        if G.img_resolution < 16:
            raise UserError(f'--preset small: needs a generator of at least 16 px, got {G.img_resolution} px')
        return encoder_module.small_encoder_kwargs(min(G.img_resolution, SMALL_MAX_RESOLUTION), w_dim=G.w_dim,
            feature_channels=SMALL_FEATURE_CHANNELS, num_ws=G.num_ws, img_channels=G.img_channels)
    raise UserError(f'--preset must be one of {", ".join(ENCODER_PRESETS)}, got {preset!r}')

def init_backbone(E, path):
    """Copy the IR-SE-50 stem and body of an ArcFace file into E (e4e's initialisation)."""
    try:
        arcface = encoder_module.load_arcface(path)
    except ValueError as err:
        raise UserError(f'--backbone-weights: {err}')
    state = {k: v for k, v in arcface.state_dict().items() if k.startswith(('input_layer.', 'body.'))}
    ours = {k: v for k, v in E.state_dict().items() if k.startswith(('input_layer.', 'body.'))}
    try:
        encoder_module.check_state_dict(ours, state, path, 'IR-SE-50 backbone')
    except ValueError as err:
        raise UserError(f'--backbone-weights: {err} (only --preset e4e with 3-channel images has the IR-SE-50 layout)')
    E.load_state_dict(state, strict=False)

def _initial_networks(network, resume, preset, seed, backbone_weights, progressive):
    """(G, D, E, latent_D, record): from --resume (record = its encoder_training_config), else --network and a fresh encoder."""
    if resume is not None:
        data = _load_snapshot(resume, '--resume')
        if not isinstance(data.get('encoder'), torch.nn.Module) or not isinstance(data.get('latent_D'), torch.nn.Module):
            raise UserError(f'--resume: {resume} is not a gradstyle-train-encoder snapshot (no encoder or latent_D)')
        return data['G_ema'], data['D'], data['encoder'], data['latent_D'], data.get('encoder_training_config') or {}
    data = _load_snapshot(network, '--network')
    G = data['G_ema']
    if attach.stage_modules(G):
        raise UserError('--network: has GradStyle stages attached; train the encoder on the plain generator')
    if G.c_dim != 0:
        raise UserError(f'--network: a conditional generator (c_dim {G.c_dim}); the e4e encoder inverts unconditional generators')
    with torch.random.fork_rng(devices=[]):     # the initial weights follow --seed
        torch.manual_seed(seed)
        E = dnnlib.util.construct_class_by_name(**encoder_preset_kwargs(preset, G)).eval().requires_grad_(False)
        latent_D = LatentDiscriminator(w_dim=G.w_dim).eval().requires_grad_(False)
    with torch.no_grad():
        E.latent_avg.copy_(pairing.mean_w(G).to(E.latent_avg.dtype).expand_as(E.latent_avg))
    if backbone_weights is not None:
        init_backbone(E, backbone_weights)
    if progressive:
        encoder_loss.zero_deltas(E)     # rows not trained yet give delta 0, in snapshots too
    return G, data['D'], E, latent_D, {}

def _check_fit(G, E, dataset):
    if dataset.resolution != G.img_resolution or dataset.num_channels != G.img_channels:
        raise UserError(f'--data: images are {dataset.num_channels}x{dataset.resolution}x{dataset.resolution} but the --network '
            f'generator makes {G.img_channels}x{G.img_resolution}x{G.img_resolution}')
    if (E.num_ws, E.w_dim, E.img_channels) != (G.num_ws, G.w_dim, G.img_channels):
        raise UserError(f'--resume: the encoder gives [{E.num_ws}, {E.w_dim}] from {E.img_channels}-channel images; the generator '
            f'takes [{G.num_ws}, {G.w_dim}] and makes {G.img_channels}-channel images')

#----------------------------------------------------------------------------

def _schedule(base, batch, kimg, progressive_start, progressive_step, lr):
    """The preset's (or a resumed run's recorded) schedule, with the values given on the command line."""
    values = dict(base)
    given = dict(batch=batch, kimg=kimg, progressive_start=progressive_start, progressive_step=progressive_step, lr=lr)
    values.update({key: value for key, value in given.items() if value is not None})
    if values['progressive_start'] is not None and values['progressive_start'] < 0:
        raise UserError('--progressive-start must be >= 0')
    if values['progressive_step'] <= 0:
        raise UserError('--progressive-step must be > 0')
    return dnnlib.EasyDict(values)

def _encoder_opt_kwargs(optimizer, lr):
    if optimizer == 'ranger':
        return dnnlib.EasyDict(class_name='gradstyle_plugin.optim.Lookahead', base='torch.optim.RAdam', lr=lr,
            betas=[0.95, 0.999], eps=1e-5, k=6, alpha=0.5, centralize=True)
    if optimizer == 'adam-lookahead':
        return dnnlib.EasyDict(class_name='gradstyle_plugin.optim.Lookahead', lr=lr, betas=[0.9, 0.999], eps=1e-8, k=5, alpha=0.5)
    raise UserError(f'--optimizer must be ranger or adam-lookahead, got {optimizer!r}')

def setup_encoder_training_config(
    network=None, data=None, resume=None, preset='small',                  # Inputs, architecture.
    batch=None, batch_gpu=None, kimg=None, gpus=1, snap=10, seed=0,         # Schedule (None = preset).
    progressive_start=None, progressive_step=None, progressive=True,
    optimizer='ranger', lr=None, d_lr=2e-5, r1_gamma=10.0, w_pool=50,      # Optimisers (lr None = preset), latent D.
    l2=1.0, lpips=0.8, id=0.1, adv=0.1, delta=2e-4, loss_res=None,         # Loss.
    lpips_weights=None, id_weights=None, id_domain='auto', backbone_weights=None,
    workers=3, device=None, grid_images=8,                                  # Performance, output.
):
    """Build (desc, training_loop kwargs, initial networks). Reads files, writes nothing.

    `init.warnings` lists what the user must hear at start (a loss term that is off).

    Example:
        >>> desc, args, init = setup_encoder_training_config(network='fashion.pkl', data='fashion32.zip', preset='small')
    """
    if preset not in ENCODER_PRESETS:
        raise UserError(f'--preset must be one of {", ".join(ENCODER_PRESETS)}, got {preset!r}')
    dataset, training_set_kwargs = open_image_dataset(data)
    G, D, E, latent_D, record = _initial_networks(network, resume, preset, seed, backbone_weights, progressive)
    preset = record['preset'] if record.get('preset') in ENCODER_PRESETS else preset    # a resumed run keeps its preset
    sched = _schedule(dict(ENCODER_PRESETS[preset], **record.get('schedule', {})), batch, kimg, progressive_start, progressive_step,
        lr)                                         # ... and its schedule, except the values given
    batch_gpu = check_batch(sched.batch, batch_gpu, gpus)
    _check_fit(G, E, dataset)
    loss_res = image_losses.resolve_loss_resolution(E.img_resolution if loss_res is None else loss_res, G.img_resolution)
    _check_loss_networks(lpips, lpips_weights, id, id_weights, id_domain)
    effective, warnings = image_losses.effective_weights(l2, lpips, id, lpips_weights, id_weights)

    args = dnnlib.EasyDict(num_gpus=gpus, random_seed=seed, batch_size=sched.batch, batch_gpu=batch_gpu, total_kimg=sched.kimg,
        kimg_per_tick=max(min(sched.kimg / 10, 4), 0.001), image_snapshot_ticks=snap, network_snapshot_ticks=snap, metrics=[])
    args.training_set_kwargs = training_set_kwargs
    args.data_loader_kwargs = dnnlib.EasyDict(pin_memory=torch.cuda.is_available(), num_workers=workers)
    if workers > 0:
        args.data_loader_kwargs.prefetch_factor = 2
    args.G_kwargs = _kwargs_of(G)
    args.D_kwargs = _kwargs_of(D) if D is not None else _default_D_kwargs(G)
    args.G_trainable = args.D_trainable = NEVER       # the generator (and its D) stay as they are
    args.G_opt_kwargs = args.D_opt_kwargs = {}
    args.G_reg_interval = args.D_reg_interval = None
    args.extra_kwargs = dnnlib.EasyDict(encoder=_kwargs_of(E, drop=()), latent_D=_kwargs_of(latent_D, drop=()))
    args.extra_phases = dnnlib.EasyDict()
    if adv != 0:    # e4e trains its latent discriminator before the encoder in every step
        args.extra_phases.latent_D = dict(opt_kwargs=dnnlib.EasyDict(class_name='torch.optim.Adam', lr=d_lr, betas=[0.9, 0.999]),
            reg_interval=16 if r1_gamma != 0 else None, trainable='.*')
    args.extra_phases.encoder = dict(opt_kwargs=_encoder_opt_kwargs(optimizer, sched.lr), reg_interval=None, trainable='.*')
    args.loss_kwargs = dnnlib.EasyDict(class_name=LOSS_CLASS, l2_weight=effective.l2, lpips_weight=effective.lpips,
        id_weight=effective.id, adv_weight=adv, delta_weight=delta, r1_gamma=r1_gamma, w_pool=w_pool, loss_res=loss_res,
        progressive_start=int(sched.progressive_start * 1000) if progressive and sched.progressive_start is not None else None,
        progressive_step=max(int(sched.progressive_step * 1000), 1),
        lpips_weights=lpips_weights if effective.lpips != 0 else None, id_weights=id_weights if effective.id != 0 else None,
        id_domain=id_domain, requested_weights=dict(l2=l2, lpips=lpips, id=id))
    args.augment_kwargs = None
    args.ema_kimg = 0.0
    args.ema_rampup = None
    args.image_grid_kwargs = dnnlib.EasyDict(class_name=GRID_FUNC, num_images=grid_images)
    requested = dict(l2=l2, lpips=lpips, id=id, adv=adv, delta=delta)
    args.snapshot_extra_data = dict(encoder_training_config=dict(preset=preset, schedule=dict(sched),
        progressive=bool(progressive), optimizer=optimizer, lr=sched.lr, d_lr=d_lr, r1_gamma=r1_gamma, loss_res=loss_res,
        encoder_params=sum(p.numel() for p in E.parameters()), loss_weights=dict(requested=requested,
        effective=dict(requested, **effective)), provenance=dict(ENCODER_PROVENANCE)))
    if device is not None:
        args.device = device
    if resume is not None:
        args.resume_pkl = resume
    desc = f'{dataset.name}-encoder-{preset}-batch{sched.batch}-kimg{sched.kimg:g}' + ('-resume' if resume else '')
    return desc, args, dnnlib.EasyDict(G=G, D=D, G_ema=G, encoder=E, latent_D=latent_D, warnings=warnings)

#----------------------------------------------------------------------------
