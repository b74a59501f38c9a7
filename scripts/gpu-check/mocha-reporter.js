// Mocha reporter for scripts/gpu-check.sh: prints mocha's usual spec output (the call's output
// tail) and writes every test's result to the JSON file named by GPU_CHECK_TESTS_JSON:
//   { passed, failed, pending, durationMs, tests: [{ title, file, state, durationMs, error? }] }
// The file is rewritten after each test, so a run stopped by the time limit still leaves the
// results so far (with "complete": false).
'use strict';
const fs = require('fs');
const Mocha = require('mocha');

const { EVENT_TEST_PASS, EVENT_TEST_FAIL, EVENT_TEST_PENDING, EVENT_RUN_END } = Mocha.Runner.constants;

class GpuCheckReporter extends Mocha.reporters.Spec {
  constructor(runner, options) {
    super(runner, options);
    const out = process.env.GPU_CHECK_TESTS_JSON;
    const started = Date.now();
    const tests = [];
    const counts = { passed: 0, failed: 0, pending: 0 };
    const write = (complete) => {
      if (!out) return;
      const body = JSON.stringify({ ...counts, complete, durationMs: Date.now() - started, tests }, null, 1);
      fs.writeFileSync(`${out}.tmp`, body + '\n');
      fs.renameSync(`${out}.tmp`, out);
    };
    const add = (test, state, err) => {
      const row = { title: test.fullTitle(), file: test.file ? require('path').relative(process.cwd(), test.file) : null, state, durationMs: test.duration ?? 0 };
      if (err) row.error = String(err.message || err).slice(0, 2000);
      tests.push(row);
      counts[state] += 1;
      write(false);
    };
    runner.on(EVENT_TEST_PASS, (t) => add(t, 'passed'));
    // A failing hook (before/after) is reported as a failed test named after the hook.
    runner.on(EVENT_TEST_FAIL, (t, err) => add(t, 'failed', err));
    runner.on(EVENT_TEST_PENDING, (t) => add(t, 'pending'));
    runner.once(EVENT_RUN_END, () => write(true));
  }
}

module.exports = GpuCheckReporter;
