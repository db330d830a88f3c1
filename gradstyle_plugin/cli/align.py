"""`gradstyle-align`: FFHQ-aligned face crops of photos, with the transforms that paste-back needs.

For each input photo it writes `<outdir>/<stem>.png` (the aligned crop, R x R) and records in
`<outdir>/align.json` the transform (the FFHQ quad in photo pixels, the crop -> photo matrix),
the landmarks, the number of faces and the notes. Faces come from MediaPipe's bundled models
(the optional extra `pip install -e ".[align]"`); see `gradstyle_plugin/align/`. Exit status: 0
when every photo was aligned, 1 when some were skipped (no face, unreadable; the others are
still written), 2 for usage errors.

The click command only parses; `setup_align_config()` (pure) and `run_align()` do the work.
"""

import json
import os

import click

from stylegan2_ada_pytorch import dnnlib
from stylegan2_ada_pytorch.dnnlib import UserError
from stylegan2_ada_pytorch.images import SkipImage, list_images, save_image
from gradstyle_plugin import align
from gradstyle_plugin.cli.edit import _plural, _run, write_json

SUMMARY_NAME = 'align.json'

#----------------------------------------------------------------------------

def setup_align_config(input, outdir=None, resolution=1024, face_index=0):
    """Validated options of `gradstyle-align` as an EasyDict (JSON-serialisable; printed by --dry-run)."""
    align.require_mediapipe('gradstyle-align')
    entries, ignored = list_images(input)
    if not entries:
        raise UserError(f'--input: no images in {input} (ignored: {", ".join(ignored[:5]) or "nothing"})')
    if outdir is None:
        raise UserError('--outdir: required')
    if resolution < 8:
        raise UserError(f'--resolution: must be at least 8, got {resolution}')
    if face_index < 0:
        raise UserError(f'--face-index: must be 0 (the largest face) or more, got {face_index}')
    return dnnlib.EasyDict(input=input, inputs=[e.name for e in entries], ignored=ignored, outdir=os.path.abspath(outdir),
        resolution=int(resolution), face_index=int(face_index),
        recipe='FFHQ (eye centres, mouth corners -> oriented square); landmarks: MediaPipe 0.10.14 Face Mesh (ours)')

def run_align(c, log=print, progress=None):
    """Align every input of config `c`; returns the summary dict (also written to align.json)."""
    entries, _ignored = list_images(c.input)
    os.makedirs(c.outdir, exist_ok=True)
    finder = align.FaceFinder('gradstyle-align')
    records = []
    try:
        for entry in entries:
            record = dict(name=entry.name, stem=entry.stem, status='failed')
            records.append(record)
            try:
                _photo, aligned, record['notes'] = align.align_file(entry, c.resolution, c.face_index, finder)
                if record['notes']:
                    log(f'{entry.name}: {"; ".join(record["notes"])}')
                save_image(os.path.join(c.outdir, f'{entry.stem}.png'), aligned.crop)
                record.update(status='ok', crop=f'{entry.stem}.png', **aligned.to_dict())
            except SkipImage as err:
                record['error'] = str(err)
                log(f'{entry.name}: skipped: {err}')
            except OSError as err:
                record['error'] = f'cannot write outputs ({err})'
                log(f'{entry.name}: failed: {record["error"]}')
            if progress is not None:
                progress(1)
    finally:
        finder.close()
    failed = [r for r in records if r['status'] != 'ok']
    summary = dict(format='gradstyle-align/1', config=dict(c), coordinates='pixels, pixel (i, j) covers [i, i+1] x [j, j+1]',
        num_inputs=len(records), num_ok=len(records) - len(failed), num_failed=len(failed), inputs=records)
    write_json(os.path.join(c.outdir, SUMMARY_NAME), summary)
    return summary

#----------------------------------------------------------------------------

@click.command()
@click.option('--input', 'input_',  help='Photo file, folder (recursive) or zip', required=True, metavar='PATH')
@click.option('--outdir',           help='Where to write the crops and align.json', required=True, metavar='DIR')
@click.option('--resolution',       help='Crop size (the network resolution)', type=int, default=1024, show_default=True, metavar='INT')
@click.option('--face-index',       help='Which face when a photo has several, by size (0 = the largest)', type=int, default=0, show_default=True, metavar='INT')
@click.option('--dry-run', '-n',    help='Print the resolved options as JSON and exit', is_flag=True)
def main(input_, outdir, resolution, face_index, dry_run):
    """Detect the face in each photo and write its FFHQ-aligned crop (offline; needs the [align] extra).

    \b
    Example:
    gradstyle-align --input photos/ --outdir aligned/ --resolution 1024
    \b
    Writes <outdir>/<stem>.png and <outdir>/align.json (the transform of each crop, for paste-back).
    Exit status: 0 all aligned, 1 some photos skipped (no face, unreadable), 2 usage error.
    """
    c = _run(setup_align_config, input_, outdir, resolution, face_index)
    if dry_run:
        click.echo(json.dumps(c, indent=2))
        return
    with click.progressbar(length=len(c.inputs), label=f'Aligning {_plural(len(c.inputs), "photo")}') as bar:
        summary = _run(run_align, c, log=click.echo, progress=bar.update)
    click.echo(f'{summary["num_ok"]} of {_plural(summary["num_inputs"], "photo")} aligned -> {c.outdir}; transforms in {SUMMARY_NAME}')
    if summary['num_failed']:
        names = [r['name'] for r in summary['inputs'] if r['status'] != 'ok']
        click.echo(f'{summary["num_failed"]} skipped: {", ".join(names[:5])}{" ..." if len(names) > 5 else ""}', err=True)
        raise SystemExit(1)

#----------------------------------------------------------------------------

if __name__ == '__main__':
    main()

#----------------------------------------------------------------------------
