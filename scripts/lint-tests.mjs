#!/usr/bin/env node
// Fails when a test cannot fail: a test file without any assertion, an assertion on a constant
// (`assert!(true)`, `assert_eq!(1, 1)`, `assert.ok(count >= 0)`, `expect(true)`…), a zero count
// checked as a substring ("0 outdated" is also in "10 outdated"), or a test that "skips" by
// printing a message and returning (the runner counts it as passed), or a fixed wait of a second
// or more right before an assertion (sleep-and-hope: wait for what shows it instead). A simple
// lint over the test sources, run by scripts/test.sh before the tests themselves.
//
//   node scripts/lint-tests.mjs [DIR]        # lint the tree (DIR: another checkout); exit 1 and
//                                            # name file:line on a finding
//   node scripts/lint-tests.mjs --self-test  # check the lint against examples of each kind and
//                                            # against scripts/lint-tests.fixture/ (files that
//                                            # must be flagged, at known lines)
//
// Test files: Rust sources with #[test] / #[tokio::test] (crates/, tests/, src-tauri/, firmware/),
// the UI's *.test.ts, the browser end-to-end tests and the desktop driver. Generated, vendored and
// build output directories, and the fixture, are skipped.

import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const FIXTURE = join(ROOT, 'scripts', 'lint-tests.fixture');
const SKIP_DIRS = new Set(['node_modules', 'target', 'dist', '.git', 'generated', '.svelte-kit', 'fuzz', 'lint-tests.fixture']);

/** Every file under `dir` for which `want(path)` holds. */
function walk(dir, want, out = []) {
  let entries;
  try {
    entries = readdirSync(dir);
  } catch {
    return out;
  }
  for (const name of entries) {
    if (SKIP_DIRS.has(name)) continue;
    const path = join(dir, name);
    const st = statSync(path, { throwIfNoEntry: false });
    if (!st) continue;
    if (st.isDirectory()) walk(path, want, out);
    else if (want(path)) out.push(path);
  }
  return out;
}

const LITERAL = String.raw`(?:-?\d[\d_.]*|true|false|'[^'\n]*'|"[^"\n]*"|\[\s*\]|\{\s*\}|null|undefined|None)`;

// What counts as an assertion, per language.
const ASSERTS = {
  rust: /\bassert(?:_eq|_ne)?!|\.debug_assert\(\)|\bpanic!\s*\(|\bunwrap_err\(|\bexpect_err\(|\bunreachable!\s*\(/,
  js: /\bassert(?:\.\w+)?\s*\(|\bexpect\s*\(|\bthrow new Error\b/,
};

// Assertions on a constant: always true whatever the code under test does.
const CONSTANT = {
  rust: [
    [new RegExp(String.raw`\bassert!\s*\(\s*(?:true|!\s*false)\s*[,)]`), 'assert!(true)'],
    [new RegExp(String.raw`\bassert_eq!\s*\(\s*(${LITERAL})\s*,\s*\1\s*[,)]`), 'assert_eq! of a literal with itself'],
    [new RegExp(String.raw`\bassert_(?:eq|ne)!\s*\(\s*${LITERAL}\s*,\s*${LITERAL}\s*[,)]`), 'assert_eq!/assert_ne! of two literals'],
    [/\bassert!\s*\([^;]*?(?:\.len\(\)|\.count\(\)|as u\w+|\bu(?:8|16|32|64|size)\b[^;]*?)\s*>=\s*0\s*[,)]/, 'an unsigned value >= 0'],
    [/\bassert!\s*\([^;]*?\.(?:is_ok|is_err)\(\)\s*\|\|\s*[^;]*?\.(?:is_ok|is_err)\(\)\s*[,)]/, 'is_ok() || is_err()'],
  ],
  js: [
    [new RegExp(String.raw`\bassert(?:\.ok)?\s*\(\s*(?:true|!\s*false|1)\s*[,)]`), 'assert.ok(true)'],
    [/\bassert(?:\.ok)?\s*\([^;]*?(?:\.length|\.count\(\)\)?|count\(\)\)?|\.size)\s*>=\s*0\s*[,)]/, 'a count or length >= 0'],
    [new RegExp(String.raw`\bassert\.(?:equal|strictEqual|deepEqual|deepStrictEqual)\s*\(\s*(${LITERAL})\s*,\s*\1\s*[,)]`), 'assert.equal of a literal with itself'],
    [new RegExp(String.raw`\bassert\.(?:equal|strictEqual|notEqual|notStrictEqual|deepEqual|deepStrictEqual)\s*\(\s*${LITERAL}\s*,\s*${LITERAL}\s*[,)]`), 'assert.equal of two literals'],
    [new RegExp(String.raw`(?<![.\w])expect\s*\(\s*${LITERAL}\s*\)`), 'expect(true): expect of a literal'],
  ],
};

// A zero count found as a substring: "0 outdated" is also in "10 outdated" and "20 outdated", so
// the check passes when the count it is about is 10. Anchor it (^0 …, startsWith, a separator
// before it) or compare the whole text.
const ZERO_SUBSTRING = {
  rust: [/\.(?:contains|ends_with)\s*\(\s*"0 /],
  js: [/\.(?:includes|endsWith|toContain)\s*\(\s*['"`]0 /, /\b(?:assert\.match|assert\.doesNotMatch)\s*\([^;]*?,\s*\/0 /, /(?:^|[^\w.])\/0 [^/\n]*\/[gimsuy]*\.test\s*\(/, /\btoMatch\s*\(\s*\/0 /],
};

// A "skip" that returns from the test: the runner reports it as passed. Rust has #[ignore] (with a
// cfg_attr, decided when the tests are built); node:test and vitest have t.skip() / it.skipIf().
const SKIP_RETURN = {
  rust: /\b(?:e?println!|eprint!|print!)\s*\([^;]*\bskip/i,
  js: /\bconsole\.(?:log|warn|error|info)\s*\([^;]*\bskip/i,
};

// A fixed wait of a second or more, then an assertion: the test hopes that what it checks has
// happened (or has not) by then. A slow machine makes it flaky, a fast one makes it slow, and
// when the thing it waits for is not what decides it the test cannot fail (an 11 s wait for a
// 10 min timeout). Wait for what shows it instead: a state, an event, a counter, a control that
// must change when the thing under test does. Polling loops (the wait ends the loop's body) pass.
const SLEEP = {
  rust: /\bsleep\s*\(\s*(?:std::time::)?Duration::from_(?:secs(?:_f64)?\s*\(\s*[1-9]|millis\s*\(\s*(?:[1-9]\d{3,}|[1-9]\d?_\d{3})\b)/,
  js: /\b(?:sleep|waitForTimeout)\s*\(\s*(?:[1-9]\d{3,}|[1-9]\d?_\d{3})\s*\)/,
};
const ASSERT_START = /^\s*(?:assert|expect\s*\()/;

/** Comments removed (line comments and block comments), lines kept so line numbers hold. */
function stripComments(text) {
  return text
    .replace(/\/\*[\s\S]*?\*\//g, (m) => m.replace(/[^\n]/g, ' '))
    .replace(/(^|[^:"'`\\])\/\/.*$/gm, (m, p) => p);
}

/** Findings for one file's text (`lang`: rust | js); `isTest` decides whether it is a test file. */
export function lint(text, lang) {
  const code = stripComments(text);
  const findings = [];
  if (!ASSERTS[lang].test(code)) findings.push({ line: 1, why: 'a test file with no assertion' });
  const lines = code.split('\n');
  // Assertions may span lines: look at each assertion start with what follows it.
  lines.forEach((_, i) => {
    const window = lines.slice(i, i + 4).join(' ');
    const starts = (re) => {
      const m = re.exec(window);
      return m && m.index < lines[i].length;
    };
    const constant = CONSTANT[lang].find(([re]) => starts(re));
    if (constant) findings.push({ line: i + 1, why: `assertion on a constant (${constant[1]})` });
    if (ZERO_SUBSTRING[lang].some(starts)) {
      findings.push({ line: i + 1, why: 'a zero count checked as a substring ("0 x" is also in "10 x"): anchor it' });
    }
    if (SLEEP[lang].test(lines[i])) {
      const next = lines.slice(i + 1).find((l) => l.trim() !== '');
      if (next !== undefined && ASSERT_START.test(next)) {
        findings.push({ line: i + 1, why: 'a fixed wait of a second or more, then an assertion (sleep-and-hope): wait for what shows it' });
      }
    }
    if (SKIP_RETURN[lang].test(lines[i]) && /\breturn\b/.test(lines.slice(i, i + 3).join(' '))) {
      findings.push({ line: i + 1, why: 'a skip that returns, which the runner reports as passed: use #[ignore] (cfg_attr) or t.skip(), or fail' });
    }
  });
  return findings;
}

/** The test files under `root` (the repository, or the fixture laid out like it). */
function testFiles(root) {
  const rust = walk(root, (p) => p.endsWith('.rs')).filter((p) => /#\[(?:tokio::)?test\b/.test(readFileSync(p, 'utf8')));
  const js = [
    ...walk(join(root, 'ui', 'src'), (p) => /\.test\.(?:ts|js|mjs)$/.test(p)),
    ...walk(join(root, 'e2e', 'browser', 'tests'), (p) => p.endsWith('.mjs')),
    ...walk(join(root, 'e2e', 'desktop'), (p) => p.endsWith('driver.mjs')),
  ];
  return [...rust.map((p) => [p, 'rust']), ...js.map((p) => [p, 'js'])];
}

/** `file:line: why` for every finding in the test files under `root`, and how many files were read. */
function lintTree(root) {
  const files = testFiles(root);
  const out = [];
  for (const [path, lang] of files.sort()) {
    for (const f of lint(readFileSync(path, 'utf8'), lang)) out.push(`${relative(root, path)}:${f.line}: ${f.why}`);
  }
  return { files: files.length, findings: out };
}

function selfTest() {
  const cases = [
    ['rust', '#[test]\nfn t() { let x = 1; }', ['a test file with no assertion']],
    ['rust', '#[test]\nfn t() { assert!(true); }', ['assertion on a constant (assert!(true))']],
    ['rust', '#[test]\nfn t() { assert_eq!(3, 3, "same"); }', ['assertion on a constant (assert_eq! of a literal with itself)']],
    ['rust', '#[test]\nfn t() { assert!(v.len() >= 0); }', ['assertion on a constant (an unsigned value >= 0)']],
    ['rust', '#[test]\nfn t() { assert!(r.is_ok() || r.is_err()); }', ['assertion on a constant (is_ok() || is_err())']],
    ['rust', '#[test]\nfn t() { assert_eq!(f(2), 4); assert!(x >= 1); }', []],
    ['rust', '#[test]\nfn t() {\n    // assert!(true) in a comment does not count\n    assert_eq!(\n        f(),\n        2\n    );\n}', []],
    ['js', "test('x', async () => { await page.click('a'); });", ['a test file with no assertion']],
    ['js', "test('x', () => { assert.ok((await page.getByTestId('event-row').count()) >= 0); });", ['assertion on a constant (a count or length >= 0)']],
    ['js', "test('x', () => { assert.ok(rows.length >= 0, 'rows'); });", ['assertion on a constant (a count or length >= 0)']],
    ['js', "test('x', () => { assert.ok(true); });", ['assertion on a constant (assert.ok(true))']],
    ['js', "it('x', () => { expect(true).toBe(true); });", ['assertion on a constant (expect(true): expect of a literal)']],
    ['js', "test('x', () => { assert.equal('a', 'a'); });", ['assertion on a constant (assert.equal of a literal with itself)']],
    ['js', "test('x', () => { assert.equal(rows.length, 3); expect(f()).toBe(2); });", []],
    ['rust', '#[test]\nfn t() { assert_ne!(1, 2); }', ['assertion on a constant (assert_eq!/assert_ne! of two literals)']],
    ['js', "it('x', () => { expect(true); });", ['assertion on a constant (expect(true): expect of a literal)']],
    ['js', "test('x', () => { assert.notEqual('a', 'b'); });", ['assertion on a constant (assert.equal of two literals)']],
    ['js', "test('x', async () => { await until(async () => (await t('tile')).includes('0 outdated')); assert.ok(x); });", ['a zero count checked as a substring ("0 x" is also in "10 x"): anchor it']],
    ['js', "test('x', () => { assert.match(text, /0 outdated/); });", ['a zero count checked as a substring ("0 x" is also in "10 x"): anchor it']],
    ['js', "test('x', () => { assert.ok(/0 failed/.test(text)); });", ['a zero count checked as a substring ("0 x" is also in "10 x"): anchor it']],
    ['js', "test('x', () => { assert.match(text, /^0 outdated/); assert.ok(/^0 failed/.test(t)); assert.ok(t.startsWith('0 x')); });", []],
    ['rust', '#[test]\nfn t() { assert!(s.contains("0 devices")); }', ['a zero count checked as a substring ("0 x" is also in "10 x"): anchor it']],
    ['rust', '#[test]\nfn t() { assert!(s.contains("10 devices")); assert!(s.starts_with("0 devices")); }', []],
    ['rust', '#[test]\nfn t() {\n    if no_lan() {\n        eprintln!("skipped: no LAN address");\n        return;\n    }\n    assert!(f());\n}', ['a skip that returns, which the runner reports as passed: use #[ignore] (cfg_attr) or t.skip(), or fail']],
    ['js', "test('x', (t) => {\n  if (!ok) { console.log('skipping: no display');\n    return; }\n  assert.ok(f());\n});", ['a skip that returns, which the runner reports as passed: use #[ignore] (cfg_attr) or t.skip(), or fail']],
    ['js', "test('x', (t) => {\n  if (!ok) return t.skip('no display');\n  assert.ok(f());\n});", []],
    ['js', "test('x', async () => { await page.evaluate(() => window.__probe.expect('[data-testid=\"row\"]')); assert.ok(f()); });", []],
    ['rust', '#[tokio::test]\nasync fn t() {\n    tokio::time::sleep(Duration::from_secs(11)).await;\n    assert_eq!(online(), true);\n}', ['a fixed wait of a second or more, then an assertion (sleep-and-hope): wait for what shows it']],
    ['rust', '#[tokio::test]\nasync fn t() {\n    tokio::time::sleep(Duration::from_millis(1_500)).await;\n\n    assert!(nothing_flashed());\n}', ['a fixed wait of a second or more, then an assertion (sleep-and-hope): wait for what shows it']],
    ['rust', '#[tokio::test]\nasync fn t() {\n    loop {\n        if done() { break; }\n        tokio::time::sleep(Duration::from_secs(1)).await;\n    }\n    assert!(f());\n}', []],
    ['rust', '#[tokio::test]\nasync fn t() {\n    tokio::time::sleep(Duration::from_millis(200)).await;\n    assert!(f());\n}', []],
    ['js', "test('x', async () => {\n  await sleep(2000);\n  assert.equal(rows(), 3);\n});", ['a fixed wait of a second or more, then an assertion (sleep-and-hope): wait for what shows it']],
  ];
  let bad = 0;
  for (const [lang, text, want] of cases) {
    const got = lint(text, lang).map((f) => f.why);
    if (JSON.stringify(got) !== JSON.stringify(want)) {
      bad++;
      console.error(`self-test: ${JSON.stringify(text)}\n  want ${JSON.stringify(want)}\n  got  ${JSON.stringify(got)}`);
    }
  }
  // The fixture: files laid out like the repository, each finding at a known line. Checks the
  // walk, the languages and the `file:line` report too.
  const want = [
    'crates/demo/src/lib.rs:6: assertion on a constant (assert!(true))',
    'crates/demo/src/lib.rs:11: a skip that returns, which the runner reports as passed: use #[ignore] (cfg_attr) or t.skip(), or fail',
    'e2e/browser/tests/1-demo.test.mjs:1: a test file with no assertion',
    'e2e/desktop/driver.mjs:6: a zero count checked as a substring ("0 x" is also in "10 x"): anchor it',
    'tests/e2e/demo.rs:5: assertion on a constant (an unsigned value >= 0)',
    'tests/e2e/demo.rs:12: a fixed wait of a second or more, then an assertion (sleep-and-hope): wait for what shows it',
    'ui/src/lib/demo.test.ts:5: assertion on a constant (expect(true): expect of a literal)',
  ];
  const got = lintTree(FIXTURE);
  const fixtureRight = JSON.stringify(got.findings) === JSON.stringify(want);
  if (!fixtureRight) console.error(`self-test: ${FIXTURE}\n  want ${JSON.stringify(want, null, 2)}\n  got  ${JSON.stringify(got.findings, null, 2)}`);
  console.log(`lint-tests self-test: ${cases.length - bad}/${cases.length} cases right; the fixture (${got.files} files) ${fixtureRight ? 'flagged where it must be' : 'NOT flagged as it must be'}`);
  return bad === 0 && fixtureRight;
}

if (process.argv.includes('--self-test')) {
  process.exit(selfTest() ? 0 : 1);
}
if (!selfTest()) process.exit(1);
// A tree laid out like this repository may be given (the default is this repository).
const root = resolve(process.argv.slice(2).find((a) => !a.startsWith('--')) ?? ROOT);
const { files, findings } = lintTree(root);
for (const f of findings) console.error(f);
console.log(`lint-tests: ${files} test files read, ${findings.length} finding${findings.length === 1 ? '' : 's'}`);
process.exit(findings.length === 0 ? 0 : 1);
