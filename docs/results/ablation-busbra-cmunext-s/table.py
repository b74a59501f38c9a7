import json, csv, os, random, statistics as st
E='/tmp/ablation-runs/eval'; R='/tmp/ablation-runs/cv-e4'
def load(n):
    p=f'{E}/{n}.json'
    return json.load(open(p)) if os.path.exists(p) else None
def percase(n):
    return {r['id']: r for r in csv.DictReader(open(f'{E}/{n}.csv'))}
def paired(n, base='f1-none'):
    a, b = percase(base), percase(n)
    d = [float(b[i]['dice']) - float(a[i]['dice']) for i in a]
    rng = random.Random(0); m = []
    for _ in range(2000):
        s = [d[rng.randrange(len(d))] for _ in d]; m.append(sum(s)/len(s))
    m.sort()
    up = sum(x > 1e-9 for x in d); dn = sum(x < -1e-9 for x in d)
    return f'{sum(d)/len(d):+.4f} [{m[49]:+.4f}, {m[1949]:+.4f}]', f'{up} / {dn}'
rows = [('1. baseline (fold-1 model)', 'f1-none'), ('2a. + TTA flips (4 passes)', 'f1-flips'), ('2b. + TTA d4 (8 passes)', 'f1-d4'),
        ('3. + LCC', 'f1-lcc'), ('4a. + TTA flips + LCC', 'f1-flips-lcc'), ('4b. + TTA d4 + LCC', 'f1-d4-lcc'),
        ('6a. 5-fold ensemble (mean prob.)', 'ens-none'), ('6b. 5-fold ensemble + TTA flips + LCC', 'ens-flips-lcc')]
out=[]
P=out.append
P('| row | Dice | IoU | precision | recall | Dice per image (mean ± std) | IoU per image | HD95 px per image | ASSD px per image | missed | per-image Dice Δ vs row 1 [95% CI] | images better / worse |')
P('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|')
for label, n in rows:
    j = load(n)
    if not j: P(f'| {label} | not run |'); continue
    g, p, s = j['global'], j['perImage'], j['perImageStd']
    dl, ud = ('-', '-') if n == 'f1-none' else paired(n)
    P(f"| {label} | {g['dice']:.4f} | {g['iou']:.4f} | {g['precision']:.4f} | {g['recall']:.4f} | {p['dice']:.4f} ± {s['dice']:.4f} | {p['iou']:.4f} | {p['hd95']:.2f} ± {s['hd95']:.2f} | {p['assd']:.2f} | {p['hd95EmptyCases']} | {dl} | {ud} |")
# single fold models on the test set
mem = [load(f'f{k}-none') for k in range(1, 6)]
if all(mem):
    ms = lambda xs: f'{st.mean(xs):.4f} ± {st.stdev(xs):.4f}'
    P(f"| single fold models on the test set, mean ± std (5 models) | {ms([m['global']['dice'] for m in mem])} | {ms([m['global']['iou'] for m in mem])} | {ms([m['global']['precision'] for m in mem])} | {ms([m['global']['recall'] for m in mem])} | {ms([m['perImage']['dice'] for m in mem])} | {ms([m['perImage']['iou'] for m in mem])} | {st.mean([m['perImage']['hd95'] for m in mem]):.2f} ± {st.stdev([m['perImage']['hd95'] for m in mem]):.2f} | {st.mean([m['perImage']['assd'] for m in mem]):.2f} | - | - | - |")
    for k, m in enumerate(mem, 1): P(f"<!-- fold {k} on test: dice {m['global']['dice']:.4f} iou {m['global']['iou']:.4f} dice_img {m['perImage']['dice']:.4f} hd95 {m['perImage']['hd95']:.2f} -->")
cvj = f'{R}/cv.json'
if os.path.exists(cvj):
    c = json.load(open(cvj)); mu, sd = c['mean'], c['stdev']
    f = lambda k, d=4: f"{mu[k]:.{d}f} ± {sd[k]:.{d}f}"
    P(f"| 5. 5-fold CV, held-out folds, mean ± sample std | {f('dice')} | {f('iou')} | {f('precision')} | {f('recall')} | {f('dice_img')} | {f('iou_img')} | {f('hd95_img',2)} | {f('assd_img',2)} | - | - | - |")
    for pf in c['perFold']:
        m = pf['metrics']; P(f"<!-- cv fold {pf['fold']} ({pf['counts']}) best epoch {pf['bestEpoch']}: dice {m['dice']:.4f} iou {m['iou']:.4f} dice_img {m['dice_img']:.4f} hd95 {m['hd95_img']:.2f} -->")

head, body = out[:2], out[2:]
rows_ = [l for l in body if l.startswith('| ')]
notes = [l for l in body if not l.startswith('| ')]
order = lambda l: (0, l) if l[2] in '1234' else (1, l) if l.startswith('| 5.') else (2, l) if l.startswith('| 6') else (3, l)
rows_.sort(key=lambda l: order(l)[0])
print('\n'.join(head + rows_ + notes))
