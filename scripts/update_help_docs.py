#!/usr/bin/env python
"""Regenerate docs/<command>-help.txt from each command's --help (tests/cli compares them).

    python scripts/update_help_docs.py          # every docs/*-help.txt whose command is in pyproject.toml

The file name is the console script's name (`train-help.txt` is `stylegan2-train`, the toolkit's
train.py), its entry point is read from pyproject.toml, and --help is rendered 100 columns wide.
"""

import glob
import importlib
import os
import sys
import tomllib

from click.testing import CliRunner

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ALIASES = {'train': 'stylegan2-train', 'generate': 'stylegan2-generate'}

def main():
    with open(os.path.join(ROOT, 'pyproject.toml'), 'rb') as f:
        scripts = tomllib.load(f)['project']['scripts']
    for path in sorted(glob.glob(os.path.join(ROOT, 'docs', '*-help.txt'))):
        name = os.path.basename(path)[:-len('-help.txt')]
        target = scripts.get(ALIASES.get(name, name))
        if target is None:
            print(f'{path}: no console script {name!r} in pyproject.toml', file=sys.stderr)
            continue
        module, func = target.split(':')
        result = CliRunner().invoke(getattr(importlib.import_module(module), func), ['--help'], terminal_width=100)
        with open(path, 'w', encoding='utf-8') as f:
            f.write(result.output)
        print(f'{os.path.relpath(path, ROOT)}: {len(result.output.splitlines())} lines')

if __name__ == '__main__':
    main()
