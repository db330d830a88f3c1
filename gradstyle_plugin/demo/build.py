"""Build the demo bundle from real Fashion-MNIST, step by step, resumably (scripts/build_demo_bundle.py).

Steps (each writes into WORKDIR, records its outputs in WORKDIR/build_state.json and is skipped
when already done; the training steps resume from their latest snapshot when interrupted):

    data         real Fashion-MNIST idx files (Debian dataset-fashion-mnist) -> train zip (32x32,
                 1 channel, labels) and held-out test PNGs (t10k, never seen by any training step)
    generator    stylegan2-train --cfg small (or --generator PKL: an existing run of it is reused)
    classifier   a CNN trained on the real train split (gradstyle-classifier/1 file), test accuracy
    generator-check  the classifier on generated samples: mean max-probability, classes covered
    encoder      gradstyle-train-encoder --preset small on the generator
    gradstyle    gradstyle-train on the generator + encoder
    directions   InterfaceGAN boundaries from classifier scores of generated codes + GANSpace
    eval         gradstyle-eval on the held-out test split (e4e-only vs GradStyle, edits)
    bundle       the files the demo needs, copied into the bundle folder with MANIFEST.json

Sizes: 'full' is what the committed bundle was built with; 'tiny' runs every step in about two
minutes on CPU (the test of this pipeline). Every size value here is ours.

Example:
    python scripts/build_demo_bundle.py --workdir ~/demo_build --generator runs/.../network-snapshot-000400.pkl
"""

import datetime
import json
import os
import re
import shutil
import subprocess
import sys

from stylegan2_ada_pytorch import dnnlib
from stylegan2_ada_pytorch.dnnlib import UserError

FASHION_DIR = '/usr/share/datasets/fashion-mnist'
FASHION_CLASSES = ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot']
# InterfaceGAN directions of the demo (ours): name -> the class whose probability it should raise.
ATTRIBUTES = {'trousers': 'Trouser', 'dress': 'Dress', 'boot': 'Ankle boot', 'bag': 'Bag'}
STEPS = ['data', 'generator', 'classifier', 'generator-check', 'encoder', 'gradstyle', 'directions', 'eval', 'bundle']

# InterfaceGAN's own default share of codes per side (train_boundary's chosen_num_or_ratio = 0.02, the
# top and the bottom 2% of the scores); boundary_codes is sized so that each side gets 600 codes.
BOUNDARY_RATIO = 0.02

SIZES = {   # All values ours: chosen for 2 CPU cores.
    'full': dnnlib.EasyDict(train_images=None, gen_cfg='small', gen_kimg=200, clf_epochs=4, check_samples=2000,
        enc_kimg=20, gs_kimg=10, gs_preset='fast', boundary_codes=30000, ganspace_samples=20000, ganspace_components=8,
        eval_images=500, eval_methods='e4e,gradstyle', bundle_images=16),
    'tiny': dnnlib.EasyDict(train_images=512, gen_cfg='tiny', gen_kimg=1, clf_epochs=1, check_samples=64,
        enc_kimg=0.5, gs_kimg=0.2, gs_preset='tiny', boundary_codes=400, ganspace_samples=200, ganspace_components=3,
        eval_images=16, eval_methods='e4e,gradstyle', bundle_images=8),
}

#----------------------------------------------------------------------------
# Build context: the work folder, the recorded state and the log.

class Build:
    """In-memory state of one build (never pickled): options, recorded step outputs, logging."""

    def __init__(self, workdir, size, bundle_dir, generator=None, fashion_dir=FASHION_DIR, device='cpu'):
        if size not in SIZES:
            raise UserError(f'--size: unknown size {size!r} (choose from {", ".join(SIZES)})')
        self.workdir = os.path.abspath(workdir)
        self.size_name = size
        self.size = SIZES[size]
        self.bundle_dir = os.path.abspath(bundle_dir)
        self.generator = generator
        self.fashion_dir = fashion_dir
        self.device = device
        os.makedirs(self.workdir, exist_ok=True)
        self.state_path = os.path.join(self.workdir, 'build_state.json')
        self.state = json.load(open(self.state_path)) if os.path.isfile(self.state_path) else {}
        if self.state.get('size', size) != size:
            raise UserError(f'--size: {self.workdir} holds a {self.state["size"]!r} build; use another --workdir')
        self.state['size'] = size

    def path(self, *parts):
        return os.path.join(self.workdir, *parts)

    def log(self, message):
        line = f'[{datetime.datetime.now():%H:%M:%S}] {message}'
        print(line, flush=True)
        with open(self.path('build.log'), 'a', encoding='utf-8') as f:
            f.write(line + '\n')

    def done(self, step):
        return step in self.state.get('steps', {})

    def outputs(self, step):
        return dnnlib.EasyDict(self.state['steps'][step])

    def record(self, step, outputs):
        self.state.setdefault('steps', {})[step] = outputs
        with dnnlib.util.atomic_write(self.state_path, 'w') as f:
            json.dump(self.state, f, indent=2)

    def run(self, module, args, logname):
        """Run `python -m module args...`, its output appended to WORKDIR/logs/<logname>.log; UserError on failure."""
        os.makedirs(self.path('logs'), exist_ok=True)
        cmd = [sys.executable, '-m', module] + [str(a) for a in args]
        self.log('$ ' + ' '.join(cmd[2:]))
        with open(self.path('logs', f'{logname}.log'), 'a', encoding='utf-8') as f:
            rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=self.workdir).returncode
        if rc != 0:
            raise UserError(f'step {logname}: {module} exited with {rc}; see {self.path("logs", logname + ".log")}')
        return cmd[2:]

def latest_snapshot(run_root):
    """The newest network-snapshot-*.pkl under run_root (any run directory), or None."""
    best = None
    if os.path.isdir(run_root):
        for run in sorted(os.listdir(run_root)):
            folder = os.path.join(run_root, run)
            for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
                m = re.fullmatch(r'network-snapshot-(\d+)\.pkl', name)
                if m and (best is None or int(m.group(1)) >= best[0]):
                    best = (int(m.group(1)), os.path.join(folder, name))
    return best[1] if best else None

def snapshot_kimg(pkl):
    """The kimg in a network-snapshot-<kimg>.pkl name (what a run actually reached), or None."""
    m = re.fullmatch(r'network-snapshot-(\d+)\.pkl', os.path.basename(pkl or ''))
    return int(m.group(1)) if m else None

#----------------------------------------------------------------------------

def build(b, steps=None, log_steps=True):
    """Run the requested steps (default all) in order, skipping the ones already recorded."""
    from gradstyle_plugin.demo import build_steps
    for step in steps or STEPS:
        if step not in STEPS:
            raise UserError(f'--step: unknown step {step!r} (choose from {", ".join(STEPS)})')
        if b.done(step):
            b.log(f'step {step}: done before ({json.dumps(b.state["steps"][step])[:200]})')
            continue
        b.log(f'step {step}: start')
        outputs = getattr(build_steps, 'step_' + step.replace('-', '_'))(b)
        b.record(step, outputs)
        b.log(f'step {step}: done {json.dumps(outputs)[:300]}')
    return b.state

def copy_into(src, dst):
    """Copy a file or folder to dst (parents made), replacing what is there."""
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    if os.path.isdir(src):
        shutil.copytree(src, dst, dirs_exist_ok=True)
    else:
        shutil.copyfile(src, dst)

#----------------------------------------------------------------------------
