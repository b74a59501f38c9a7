# Patient-wise 5-fold split of BUS-BRA minus its own fold-1 test set (kFold == 1 in 5-fold-cv.csv).
import csv, random, collections
root = '/work/shared/data/bus-bra'
folds = list(csv.DictReader(open(f'{root}/5-fold-cv.csv')))
meta = {r['ID']: r for r in csv.DictReader(open(f'{root}/bus_data.csv'))}
case = {i: meta[i]['Case'] for i in meta}
test = sorted(r['ID'] for r in folds if r['kFold'] == '1')
pool = [r for r in folds if r['kFold'] != '1']
tc = {case[i] for i in test}; pc = {case[r['ID']] for r in pool}
assert not (tc & pc), 'authors fold 1 is not patient-disjoint'
cases = sorted(pc, key=int)
rng = random.Random(0); rng.shuffle(cases)
part = {c: k % 5 + 1 for k, c in enumerate(cases)}
with open('test.txt', 'w') as f: f.write('\n'.join(test) + '\n')
# validation: 20 % of each fold's training patients (seeded, per fold)
valc = {}
for k in range(1, 6):
    rest = sorted([c for c in cases if part[c] != k], key=int)
    random.Random(100 + k).shuffle(rest)
    valc[k] = set(rest[:round(len(rest) * 0.2)])
with open('busbra-pool/5-fold-cv.csv', 'w', newline='') as f:
    w = csv.writer(f); w.writerow(['ID', 'Pathology', 'kFold'] + [f'valid_{k}' for k in range(1, 6)])
    for r in pool:
        c = case[r['ID']]; kf = part[c]
        w.writerow([r['ID'], r['Pathology'], kf] + ['NaN' if kf == k else (0 if c in valc[k] else 1) for k in range(1, 6)])
cnt = collections.Counter(part[case[r['ID']]] for r in pool)
print('test', len(test), 'test patients', len(tc), 'pool', len(pool), 'pool patients', len(pc), 'images per part', sorted(cnt.items()))
for k in range(1,6):
    n = collections.Counter('h' if part[case[r['ID']]]==k else ('v' if case[r['ID']] in valc[k] else 't') for r in pool); print(k, dict(n))
