import * as sc from '../src';
const F: any = sc.F;
const a = sc.rand([1, 16, 8, 8]), b = sc.rand([1, 16, 8, 8]);
const t0 = performance.now();
for (let i = 0; i < 100000; i++) { F.add(a, b).dispose(); F.relu(a).dispose(); }
console.log(((performance.now() - t0) / 200000 * 1000).toFixed(2), 'us/op');
