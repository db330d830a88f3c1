"""The demo's picture (source | e4e | GradStyle | GradStyle edits) and its report.md.

Shape letters: N images (rows), K cells per row, R resolution, C channels (1 or 3).
"""

import numpy as np
from PIL import Image, ImageDraw

SCALE       = 3         # Pixel enlargement of comparison.png (ours: 32x32 cells are too small to look at).
LABEL_ROWS  = 12        # Height of the label strip above the cells, in enlarged pixels.

#----------------------------------------------------------------------------

def comparison_columns(directions):
    """[(label, method, grid column)]: source, both reconstructions, then GradStyle at each direction's -a and +a.

    Grid columns follow gradstyle-eval's sample grids: source, reconstruction, then every (direction, alpha).
    """
    cols = [('source', 'e4e', 0), ('e4e', 'e4e', 1), ('GradStyle', 'gradstyle', 1)]
    offset = 2
    for d in directions:
        alphas = d['alphas']
        lo, hi = int(np.argmin(alphas)), int(np.argmax(alphas))
        cols += [(f'{d["name"]}-', 'gradstyle', offset + lo), (f'{d["name"]}+', 'gradstyle', offset + hi)]
        offset += len(alphas)
    return cols

def comparison(grids, directions):
    """uint8 [LABEL_ROWS + N*R*SCALE, K*R*SCALE, C] from the methods' grid cells {method: [N, columns, R, R, C]}."""
    cols = comparison_columns(directions)
    rows = min(len(g) for g in grids.values())
    cells = np.concatenate([np.concatenate([grids[m][i, k] for _label, m, k in cols], axis=1) for i in range(rows)], axis=0)
    cells = cells.repeat(SCALE, axis=0).repeat(SCALE, axis=1)
    res = grids['e4e'].shape[2] * SCALE
    strip = Image.new('L', (cells.shape[1], LABEL_ROWS), 0)
    draw = ImageDraw.Draw(strip)
    for j, (label, _m, _k) in enumerate(cols):
        draw.text((j * res + 2, 0), label, fill=255)
    strip = np.asarray(strip)[:, :, None].repeat(cells.shape[2], axis=2)
    return np.concatenate([strip, cells], axis=0)

#----------------------------------------------------------------------------
# report.md

def _f(v, digits=4):
    return '-' if v is None else f'{v:.{digits}g}'

def _pct(v):
    return '-' if v is None else f'{100 * v:+.1f}%'

def _recon_rows(summary):
    r = summary['reconstruction']
    rows = [f'| {label} | {_f(r[m]["l2"])} | {_f(r[m]["one_minus_ssim"])} | {_f(r[m]["psnr"])} | {_f(r[m]["ms_per_image"], 3)} |'
        for m, label in [('e4e', 'e4e-only'), ('gradstyle', 'GradStyle')]]
    return rows + [f'| GradStyle gain | {_pct(r["l2_gain"])} | {_pct(r["one_minus_ssim_gain"])} | | |']

def _edit_rows(summary):
    return [f'| {name} | {_f(e["e4e"]["intended"], 3)} | {_f(e["gradstyle"]["intended"], 3)} | {_f(e["e4e"].get("intended_both"), 3)} | '
        f'{_f(e["gradstyle"].get("intended_both"), 3)} | {_f(e["e4e"]["id"])} | {_f(e["gradstyle"]["id"])} |'
        for name, e in summary['edits'].items()]

def _build_rows(build_report):
    rows = []
    for m, v in build_report['methods'].items():
        t = v['table1']
        rows.append(f'| {m} | {_f(t["l2"])} | {_f(None if t["ssim"] is None else 1 - t["ssim"])} | {_f(t["psnr"])} |')
    return rows

def markdown(summary, committed, build_report, provenance):
    """report.md of the demo: the comparison, the committed figures of the same images, the build's eval."""
    n = summary['num_images']
    lines = ['# gradstyle-demo', '', f'{n} images, the bundled Fashion-MNIST network (sha256 {summary["network_sha256"][:12]}); '
        'e4e-only = the encoder\'s W+ alone, GradStyle = both streams (GRM residuals aligned by the GAM).', '',
        '![source | e4e | GradStyle | GradStyle edits at -a and +a](comparison.png)', '', '## Reconstruction', '',
        '| Method | L2 (↓) | 1 - SSIM (↓) | PSNR (↑) | ms/image |', '|---|---|---|---|---|'] + _recon_rows(summary)
    lines += ['', '## Edits (classifier attribute; ID = cosine of classifier features, source vs edit, mean of -a and +a)', '',
        '| Direction | e4e intended | GradStyle intended | e4e intended both | GradStyle intended both | e4e ID | GradStyle ID |',
        '|---|---|---|---|---|---|---|'] + _edit_rows(summary)
    lines += ['', 'intended: fraction of edits that move the attribute log-odds the way alpha points (from the method\'s own alpha-0 edit), '
        'each image on the side it can move to (-a if the source has the attribute, else +a); intended both: every image on both signs.']
    lines += ['', '## Checks', ''] + [f'- {"PASS" if c["passed"] else ("n/a" if c["passed"] is None else "FAIL")}: {c["name"]}: '
        f'{_f(c["value"])} (needs {c["op"]} {c["threshold"]})' for c in summary['checks']]
    if committed is not None:
        same = committed.get('images') == summary['images']
        lines += ['', f'## The bundle\'s own figures for {"these" if same else "its"} images (recorded when it was built)', '',
            '| Method | L2 (↓) | 1 - SSIM (↓) | PSNR (↑) | ms/image |', '|---|---|---|---|---|'] + _recon_rows(committed)
    gen = (provenance.get('steps') or {}).get('generator') or {}
    check = (provenance.get('steps') or {}).get('generator-check') or {}
    lines += ['', f'## The build\'s evaluation ({build_report["protocol"]["num_images"]} held-out test images)', '',
        '| Method | L2 (↓) | 1 - SSIM (↓) | PSNR (↑) |', '|---|---|---|---|'] + _build_rows(build_report)
    lines += ['', f'Generator: fid2k_pix {_f(gen.get("fid2k_pix"))}; classifier on generated samples: mean max-probability '
        f'{_f(check.get("mean_max_prob"), 3)}, classes covered {check.get("classes_covered", "-")}/10.',
        '', 'Alpha sweeps of every direction: [e4e](eval/samples/e4e.png), [GradStyle](eval/samples/gradstyle.png); '
        'full tables: [eval/report.md](eval/report.md).', '']
    return '\n'.join(lines)

#----------------------------------------------------------------------------
