"""report.json's summaries and tables (paper Table 1: reconstruction, Table 2: edit ID per direction and
sign), report.md, and the distortion-vs-editability plot.

Means are over the images where the metric is defined and finite; an image without a value for an
active metric is listed under the method's `unscored` with the metric, never left out silently.
"""

import os

import numpy as np

from stylegan2_ada_pytorch import dnnlib
from gradstyle_plugin.eval.metrics import finite_mean

TABLE1 = [('id', 'ID', '↑'), ('ssim', 'SSIM', '↑'), ('l2', 'L2', '↓'), ('lpips', 'LPIPS', '↓'), ('psnr', 'PSNR', '↑'),
    ('ms_ssim', 'MS-SSIM', '↑'), ('fid', 'FID', '↓'), ('kid', 'KID', '↓')]

#----------------------------------------------------------------------------

def active_metrics(scorer, resolution):
    from gradstyle_plugin.eval.metrics import ms_ssim_allowed
    return ['l2', 'psnr', 'ssim'] + (['ms_ssim'] if ms_ssim_allowed([resolution, resolution]) else []) + \
        (['lpips'] if scorer.lpips_net is not None else []) + (['id'] if scorer.id_source else [])

def unscored(images, active, directions_active):
    """[{'image', 'metric'}] of every active metric without a finite value."""
    out = []
    for r in images:
        out += [dict(image=r['image'], metric=m) for m in active if r.get(m) is None]
        for dname, cells in r['edits'].items():
            for a, cell in cells.items():
                out += [dict(image=r['image'], metric=f'{dname}@{a}/{k}') for k in directions_active.get(dname, []) if cell.get(k) is None]
    return out

def _signed(alphas, sign):
    vals = [a for a in alphas if a * sign > 0]
    return (max(vals) if sign > 0 else min(vals)) if vals else None

def _intended(images, dname, alphas, both):
    """Fraction of the scored edits whose attribute change has the sign of alpha (None if none is scored).

    both=False (the reported "intended"; ours): each image is scored on the side it can move to, its
    -alpha edits when the source has the attribute (source log-odds > 0), else its +alpha edits.
    both=True: every image on both signs (an absent class cannot become "more absent", so its
    -alpha changes are mostly noise and artifacts; reported as "intended both")."""
    hits = []
    for r in images:
        side = (r.get('attr_source') or {}).get(dname)
        for a in alphas:
            v = r['edits'][dname][str(a)]['attr']
            if a != 0 and v is not None and (both or (side is not None and (side > 0) == (a < 0))):
                hits.append(float(v * a > 0))
    return finite_mean(hits)

def summarise_edits(images, dname, alphas):
    """Per-alpha means and Table 2 figures of one direction."""
    per_alpha = {}
    for a in alphas:
        cells = [r['edits'][dname][str(a)] for r in images]
        per_alpha[str(a)] = dict(id=finite_mean([x['id'] for x in cells]), attr_change=finite_mean([x['attr'] for x in cells]),
            lec=finite_mean([x['lec'] for x in cells]), attr_intended=_intended(images, dname, [a], both=False),
            attr_intended_both=_intended(images, dname, [a], both=True))
    plus, minus = _signed(alphas, 1), _signed(alphas, -1)
    pick = lambda a, k: None if a is None else per_alpha[str(a)][k]
    nonzero = [a for a in alphas if a != 0]
    return dict(alphas=list(alphas), per_alpha=per_alpha, alpha_plus=plus, alpha_minus=minus,
        id_plus=pick(plus, 'id'), id_minus=pick(minus, 'id'), attr_plus=pick(plus, 'attr_change'), attr_minus=pick(minus, 'attr_change'),
        attr_intended=_intended(images, dname, nonzero, both=False), attr_intended_both=_intended(images, dname, nonzero, both=True),
        attr_offset=finite_mean([(r.get('attr_offset') or {}).get(dname) for r in images]),
        lec=finite_mean([per_alpha[str(a)]['lec'] for a in nonzero]), smoothness=finite_mean([r['smoothness'][dname] for r in images]))

def summarise_method(result, fid, active, directions, alphas, dir_active):
    images = result['images']
    table1 = {m: finite_mean([r.get(m) for r in images]) for m, _t, _a in TABLE1 if m not in ('fid', 'kid')}
    table1.update(fid)
    stages = sorted({s for r in images for s in r['identity_error']})
    ident = {s: finite_mean([r['identity_error'].get(s) for r in images]) for s in stages} or None
    edits = {d.name: summarise_edits(images, d.name, alphas[d.name]) for d in directions}
    return dict(result['method'], table1=table1, gam_identity_error=ident, edits=edits, cost=result['cost'],
        unscored=unscored(images, active, dir_active), grid=result.get('grid'))

#----------------------------------------------------------------------------
# report.md

def _fmt(v, digits=4):
    return '-' if v is None else (f'{v:.{digits}g}' if abs(v) < 1e4 else f'{v:.3e}')

def _table(header, rows):
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    return lines + ['| ' + ' | '.join(row) + ' |' for row in rows]

def _lpips_text(p):
    rec = p['metrics']['lpips']
    return 'off' if rec is None else f'{rec["backbone"]} v{rec["version"]} ({"random backbone" if rec["weights"] == "random" else "weights sha256 " + rec["sha256"][:12]})'

def markdown(report):
    p, methods = report['protocol'], report['methods']
    lines = ['# gradstyle-eval report', '', f'Network `{p["network"]["file"]}` ({p["resolution"]}x{p["resolution"]}, '
        f'{p["num_images"]} images scored, {len(p["skipped"])} skipped); metrics at the network resolution on uint8 images; '
        f'LPIPS: {_lpips_text(p)}; ID: {(p["metrics"]["id"] or {}).get("network") or (p["metrics"]["id"] or {}).get("source", "off")}.', '',
        '## Table 1: reconstruction', '']
    lines += _table(['Method'] + [f'{t}({a})' for _m, t, a in TABLE1], [[n] + [_fmt(m['table1'].get(k)) for k, _t, _a in TABLE1]
        for n, m in methods.items()])
    lines += ['', f'FID/KID: reconstructions vs their {p["num_images"]} sources, {p["metrics"]["fid_features"]["kind"]}; '
        'both are biased and noisy below a few thousand images (KID can come out negative), compare them only at equal counts.']
    dirs = p['directions']
    if dirs:
        lines += ['', '## Table 2: edit ID (source vs edit; (+) adds the attribute, (-) removes it)', '']
        head = [f'{d["name"]}({s}) ID' for d in dirs for s in '+-']
        lines += _table(['Method'] + head, [[n] + [_fmt(m['edits'][d['name']][f'id_{k}']) for d in dirs for k in ('plus', 'minus')]
            for n, m in methods.items()])
        lines += ['', '## Editing: attribute change, consistency, smoothness', '']
        head = [f'{d["name"]} {k}' for d in dirs for k in ('attr(+)', 'attr(-)', 'intended', 'intended both', 'alpha-0 offset', 'LEC', 'smooth')]
        lines += _table(['Method'] + head + ['GAM id. error'], [[n] + [_fmt(m['edits'][d['name']][k]) for d in dirs
            for k in ('attr_plus', 'attr_minus', 'attr_intended', 'attr_intended_both', 'attr_offset', 'lec', 'smoothness')]
            + [_fmt(finite_mean(list((m['gam_identity_error'] or {}).values())))] for n, m in methods.items()])
        lines += ['', 'attr(+/-): mean change of the attribute log-odds from the method\'s own alpha-0 edit; intended: fraction of edits moving it '
            'the way alpha points, each image scored on the side it can move to (-alpha where the source has the attribute, else +alpha); '
            'intended both: every image on both signs; alpha-0 offset: the alpha-0 edit\'s log-odds minus the reconstruction\'s.']
    lines += ['', '## Cost', '']
    lines += _table(['Method', 'ms/image', 'peak MB', 'peak rise MB', 'parameters'], [[n, _fmt(m['cost']['ms_per_image']),
        _fmt(m['cost']['peak_mb']), _fmt(m['cost'].get('above_start_mb')), f'{m["cost"]["parameters"]:,}'] for n, m in methods.items()])
    lines += ['', f'Peak memory: {next(iter(methods.values()))["cost"]["kind"]}.' if methods else '']
    bad = [(n, u) for n, m in methods.items() for u in m['unscored']]
    lines += ['', f'Skipped images: {len(p["skipped"])}' + ''.join(f'\n- {s["image"]}: {s["reason"]}' for s in p['skipped'])]
    lines += [f'Unscored values: {len(bad)}' + ''.join(f'\n- {n}: {u["image"]} {u["metric"]}' for n, u in bad[:50])]
    lines += ['', 'Sample grids: ' + ', '.join(f'[{n}]({m["grid"]["file"]})' for n, m in methods.items() if m.get('grid')),
        '', f'![distortion vs editability]({report["plot"]})' if report.get('plot') else '', '']
    return '\n'.join(lines)

#----------------------------------------------------------------------------
# Distortion vs editability.

def tradeoff_points(report):
    """([(method, distortion, editability)], x label, y label): LPIPS (else L2) of the reconstructions against the
    fraction of edits that move the classifier's attribute as intended, else the edit ID, else the LEC."""
    methods = report['methods']
    dist_key = 'lpips' if any(m['table1'].get('lpips') is not None for m in methods.values()) else 'l2'
    def edit_value(m, key):
        if key == 'id':
            return finite_mean([v for e in m['edits'].values() for v in (e['id_plus'], e['id_minus'])])
        return finite_mean([e[key] for e in m['edits'].values()])
    labels = dict(attr_intended='edits that change the attribute as intended (fraction)', id='edit ID (mean of (+) and (-))',
        lec='latent editing consistency LEC (lower is better)')
    key = next((k for k in labels if any(edit_value(m, k) is not None for m in methods.values())), None)
    points = [(n, m['table1'][dist_key], edit_value(m, key)) for n, m in methods.items()
        if key and m['table1'].get(dist_key) is not None and edit_value(m, key) is not None]
    return points, f'reconstruction {dist_key.upper()} (distortion, lower is better)', labels.get(key)

def write_plot(path, report):
    points, xlabel, ylabel = tradeoff_points(report)
    if not points:
        return None
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=100)
    groups = {}
    for n, x, y in points:      # methods at the same point (e.g. grm = no-gam) share one marker and label
        groups.setdefault((f'{x:.6g}', f'{y:.6g}'), []).append((n, x, y))
    for i, members in enumerate(groups.values()):
        _n, x, y = members[0]
        ax.scatter([x], [y])
        ax.annotate(' = '.join(n for n, _x, _y in members), (x, y), textcoords='offset points', xytext=(4, 4 + 9 * (i % 3)), fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title('Distortion vs editability')
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    with dnnlib.util.atomic_write(path) as f:
        fig.savefig(f, format='png')
    plt.close(fig)
    return os.path.basename(path)

def alpha_range(summary, floor):
    """[lo, hi]: the widest interval of swept alphas around 0 whose mean edit ID stays >= floor (None if none)."""
    alphas = sorted(summary['alphas'])
    ok = lambda a: (summary['per_alpha'][str(a)]['id'] or -np.inf) >= floor
    neg = [a for a in alphas if a < 0][::-1]
    pos = [a for a in alphas if a > 0]
    lo = hi = None
    for a in neg:
        if not ok(a):
            break
        lo = a
    for a in pos:
        if not ok(a):
            break
        hi = a
    return None if lo is None and hi is None else [0.0 if lo is None else lo, 0.0 if hi is None else hi]

#----------------------------------------------------------------------------
