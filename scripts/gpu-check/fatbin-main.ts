// gpu-check.sh's fat-binary step: which GPU architectures the addon carries.
//   tsx fatbin-main.ts ADDON OUT_JSON CUOBJDUMP_TXT REQUIRE
// REQUIRE=1 (real mode, the addon just built with nvcc): exits 1 unless machine code for sm_80 and
// sm_90 is there (and, when cuobjdump ran, it names the same ELF architectures).
// REQUIRE=0 (dry run): reports what this machine's prebuilt addon holds; fails only if unreadable.
import * as fs from 'fs';
import { writeFileAtomic } from '../../src/io/atomic';
import { archsFromCuobjdump, fatbinsOfFile } from './fatbin';

const [addon, out, cuobjdumpTxt, require] = process.argv.slice(2);
if (!addon || !out) {
  console.error('usage: fatbin-main.ts ADDON OUT_JSON [CUOBJDUMP_TXT] [REQUIRE 0|1]');
  process.exit(2);
}
const summary = fatbinsOfFile(addon);
const cuobjdump = cuobjdumpTxt && fs.existsSync(cuobjdumpTxt) ? fs.readFileSync(cuobjdumpTxt, 'utf8') : '';
const cuobjdumpArchs = cuobjdump ? archsFromCuobjdump(cuobjdump) : null;
const problems: string[] = [];
if (require === '1') {
  for (const a of [80, 90]) if (!summary.elfArchs.includes(a)) problems.push(`no sm_${a} machine code in ${addon}`);
  if (cuobjdumpArchs && cuobjdumpArchs.length && cuobjdumpArchs.join() !== summary.elfArchs.join()) {
    problems.push(`cuobjdump names sm_${cuobjdumpArchs.join(', sm_')}, the fat-binary reader sm_${summary.elfArchs.join(', sm_')}`);
  }
}
const result = { addon, ...summary, cuobjdumpArchs, problems, ok: problems.length === 0 };
writeFileAtomic(out, JSON.stringify(result, null, 1) + '\n');
console.log(`[fatbin] ${addon}: ${summary.fatbins} fat binaries; ELF sm_${summary.elfArchs.join(', sm_') || '(none)'}; PTX sm_${summary.ptxArchs.join(', sm_') || '(none)'}` +
  (cuobjdumpArchs ? `; cuobjdump: sm_${cuobjdumpArchs.join(', sm_')}` : '') + (problems.length ? `\n  ${problems.join('\n  ')}` : ''));
process.exit(problems.length ? 1 : 0);
