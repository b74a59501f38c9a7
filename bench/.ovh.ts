import * as sc from '../src';
import { timeIt } from './common';
const F: any = sc.F;
const a = sc.rand([1, 16, 8, 8]), b = sc.rand([1, 16, 8, 8]);
const w = sc.rand([16, 1, 3, 3]);
for (const [name, fn] of [
  ['add small', () => F.add(a, b).dispose()],
  ['relu small', () => F.relu(a).dispose()],
  ['dwconv small', () => F.conv2d(a, w, null, { padding: 1, groups: 16 }).dispose()],
  ['sum small', () => F.sum(a).dispose()],
] as [string, () => void][]) {
  const r = timeIt(() => { for (let i = 0; i < 1000; i++) fn(); }, { budgetMs: 1000 });
  console.log(name, (r.median * 1000 / 1000).toFixed(2), 'us/op');
}
