"""The steps of the demo-bundle build (see build.py); each takes a Build and returns plain outputs."""

import glob
import json
import os
import shutil

from stylegan2_ada_pytorch.dnnlib import UserError
from gradstyle_plugin.demo import build as B
from gradstyle_plugin.demo import bundle as bundle_format
from gradstyle_plugin.demo import fashion

#----------------------------------------------------------------------------

def step_data(b):
    src = os.path.join(b.fashion_dir, 'train-images-idx3-ubyte.gz')
    if not os.path.isfile(src):
        raise UserError(f'--fashion-dir: {src} not found (install the Debian package dataset-fashion-mnist)')
    train = b.path('fashion_train32.zip')
    limit = ['--max-images', b.size.train_images] if b.size.train_images else []
    if not os.path.isfile(train):
        b.run('stylegan2_ada_pytorch.dataset_tool', ['--source', src, '--dest', train, *limit], 'data')
    test = b.path('fashion_test32')
    if not os.path.isdir(test):
        b.run('stylegan2_ada_pytorch.dataset_tool', ['--source', os.path.join(b.fashion_dir, 't10k-images-idx3-ubyte.gz'),
            '--dest', test, '--max-images', b.size.eval_images], 'data')
    return dict(train_zip=train, test_dir=test, eval_images=b.size.eval_images)

def step_generator(b):
    if b.generator:
        pkl = os.path.abspath(b.generator)
        b.log(f'generator: reusing {pkl}')
    else:
        data = b.outputs('data')
        args = ['--outdir', b.path('gen_runs'), '--data', data.train_zip, '--cfg', b.size.gen_cfg, '--kimg', b.size.gen_kimg,
            '--aug', 'noaug', '--metrics', 'fid2k_pix', '--snap', 10, '--seed', 0]
        resume = B.latest_snapshot(b.path('gen_runs'))
        b.run('stylegan2_ada_pytorch.cli.train', args + (['--resume', resume] if resume else []), 'generator')
        pkl = B.latest_snapshot(b.path('gen_runs'))
    return dict(network=pkl, kimg=B.snapshot_kimg(pkl), fid2k_pix=fashion.recorded_metric(pkl, 'fid2k_pix'), options=fashion.training_options(pkl))

def step_classifier(b):
    data = b.outputs('data')
    out = b.path('classifier.pt')
    accuracy = fashion.train_classifier(data.train_zip, data.test_dir, out, epochs=b.size.clf_epochs, device=b.device, log=b.log)
    return dict(classifier=out, test_accuracy=accuracy, epochs=b.size.clf_epochs, test_images=data.eval_images)

def step_generator_check(b):
    G = fashion.load_G(b.outputs('generator').network, b.device)
    clf = fashion.load_clf(b.outputs('classifier').classifier, b.device)
    stats = fashion.check_generator(G, clf, b.size.check_samples, b.path('generator_samples.png'))
    b.log(f'generator-check: mean max-probability {stats["mean_max_prob"]:.3f}, classes covered {stats["classes_covered"]}/10')
    return stats

def step_encoder(b):
    gen, data = b.outputs('generator'), b.outputs('data')
    resume = B.latest_snapshot(b.path('enc_runs'))
    start = ['--resume', resume] if resume else ['--network', gen.network]
    b.run('gradstyle_plugin.cli.train_encoder', [*start, '--data', data.train_zip, '--outdir', b.path('enc_runs'),
        '--preset', 'small', '--kimg', b.size.enc_kimg, '--snap', 2, '--seed', 0], 'encoder')
    pkl = B.latest_snapshot(b.path('enc_runs'))
    return dict(encoder=pkl, kimg=B.snapshot_kimg(pkl), planned_kimg=b.size.enc_kimg)

def step_gradstyle(b):
    gen, enc, data = b.outputs('generator'), b.outputs('encoder'), b.outputs('data')
    resume = B.latest_snapshot(b.path('gs_runs'))
    start = ['--resume', resume] if resume else ['--network', gen.network, '--encoder', enc.encoder]
    b.run('gradstyle_plugin.cli.train', [*start, '--data', data.train_zip, '--outdir', b.path('gs_runs'),
        '--preset', b.size.gs_preset, '--kimg', b.size.gs_kimg, '--snap', 2, '--seed', 0], 'gradstyle')
    pkl = B.latest_snapshot(b.path('gs_runs'))
    return dict(network=pkl, kimg=B.snapshot_kimg(pkl), planned_kimg=b.size.gs_kimg, preset=b.size.gs_preset)

def step_directions(b):
    gen = b.outputs('generator').network
    registry = b.path('directions')
    G = fashion.load_G(gen, b.device)
    clf = fashion.load_clf(b.outputs('classifier').classifier, b.device)
    latents, scores = fashion.score_codes(G, clf, b.size.boundary_codes, b.path('boundary'))
    common = ['--network', gen, '--registry', registry, '--dataset', 'fashion32', '--overwrite']
    for name in B.ATTRIBUTES:
        b.run('gradstyle_plugin.cli.directions', ['interfacegan', *common, '--latents', latents, '--labels', scores,
            '--column', name, '--name', name, '--ratio', B.BOUNDARY_RATIO], 'directions')
    b.run('gradstyle_plugin.cli.directions', ['ganspace', *common, '--num-samples', b.size.ganspace_samples,
        '--components', b.size.ganspace_components], 'directions')
    return dict(registry=registry, interfacegan=list(B.ATTRIBUTES), ganspace=[f'pc{i}' for i in range(b.size.ganspace_components)])

def step_eval(b):
    gs, dirs, data = b.outputs('gradstyle'), b.outputs('directions'), b.outputs('data')
    out = b.path('eval')
    args = ['--network', gs.network, '--input', data.test_dir, '--classifier', b.outputs('classifier').classifier,
        '--registry', dirs.registry, '--outdir', out, '--methods', b.size.eval_methods]
    for name in dirs.interfacegan:
        args += ['--direction', name]
    b.run('gradstyle_plugin.cli.eval', args, 'eval')
    return dict(report=os.path.join(out, 'report.json'))

def step_bundle(b):
    """Write the bundle folder: stripped network, classifier, directions, images, reports, MANIFEST.

    Built in a sibling `<bundle>.partial` folder and moved into place at the end, so an interrupted
    step leaves the previous bundle as it was.
    """
    steps = {s: b.outputs(s) for s in B.STEPS[:-1]}
    root = b.bundle_dir + '.partial'
    shutil.rmtree(root, ignore_errors=True)
    fashion.write_demo_network(steps['gradstyle'].network, os.path.join(root, 'network.pkl'))
    B.copy_into(steps['classifier'].classifier, os.path.join(root, 'classifier.pt'))
    B.copy_into(steps['directions'].registry, os.path.join(root, 'directions'))
    images = sorted(glob.glob(os.path.join(steps['data'].test_dir, '**', '*.png'), recursive=True))[:b.size.bundle_images]
    for src in images:
        B.copy_into(src, os.path.join(root, 'images', os.path.basename(src)))
    with open(steps['eval'].report, encoding='utf-8') as f:
        report = _portable(json.load(f), b.workdir)
    os.makedirs(os.path.join(root, 'eval'), exist_ok=True)
    with open(os.path.join(root, 'eval', 'report.json'), 'w', encoding='utf-8') as f:
        json.dump(report, f, indent=2)
    B.copy_into(b.path('generator_samples.png'), os.path.join(root, 'eval', 'generator_samples.png'))
    provenance = _portable(dict(size=b.size_name, sizes=dict(b.size), steps=b.state['steps'],
        note='every training length and size is ours (see gradstyle_plugin/demo/build.py)'), b.workdir)
    roles = dict(network='network.pkl', classifier='classifier.pt', directions='directions', images='images', report='eval/report.json')
    bundle_format.write_manifest(root, roles, provenance)
    _record_demo(b, root, roles, provenance)
    shutil.rmtree(b.bundle_dir, ignore_errors=True)
    os.replace(root, b.bundle_dir)
    total = sum(os.path.getsize(p) for p in glob.glob(os.path.join(b.bundle_dir, '**', '*'), recursive=True) if os.path.isfile(p))
    return dict(bundle=b.bundle_dir, bytes=total)

def _record_demo(b, root, roles, provenance):
    # gradstyle-demo on the new bundle's own images: its summary and picture go into the bundle, so
    # the demo test can recompute them on the installed bundle and compare.
    out = b.path('demo_run')
    shutil.rmtree(out, ignore_errors=True)
    b.run('gradstyle_plugin.cli.demo', ['--bundle', root, '--outdir', out, '--device', b.device], 'bundle')
    B.copy_into(os.path.join(out, 'summary.json'), os.path.join(root, 'eval', 'demo_summary.json'))
    B.copy_into(os.path.join(out, 'comparison.png'), os.path.join(root, 'eval', 'comparison.png'))
    bundle_format.write_manifest(root, dict(roles, demo_summary='eval/demo_summary.json', comparison='eval/comparison.png'), provenance)

def _portable(value, workdir):
    # Work paths in the provenance become relative to the build folder (the bundle moves).
    text = json.dumps(value).replace(workdir.rstrip('/') + '/', '<workdir>/')
    return json.loads(text)

#----------------------------------------------------------------------------
