#!/usr/bin/env node
// Fails when a test cannot fail: a test file without any assertion, or an assertion on a constant
// (`assert!(true)`, `assert_eq!(1, 1)`, `assert.ok(count >= 0)`…). A simple lint over the test
// sources, run by scripts/test.sh before the tests themselves.
//
//   node scripts/lint-tests.mjs              # lint the tree; exit 1 and name file:line on a finding
//   node scripts/lint-tests.mjs --self-test  # check the lint against examples of each kind
//
// Test files: Rust sources with #[test] / #[tokio::test] (crates/, tests/, src-tauri/, firmware/),
// the UI's *.test.ts, the browser end-to-end tests and the desktop driver. Generated, vendored and
// build output directories are skipped.

import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const SKIP_DIRS = new Set(['node_modules', 'target', 'dist', '.git', 'generated', '.svelte-kit', 'fuzz']);

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
    [/\bassert!\s*\([^;]*?(?:\.len\(\)|\.count\(\)|as u\w+|\bu(?:8|16|32|64|size)\b[^;]*?)\s*>=\s*0\s*[,)]/, 'an unsigned value >= 0'],
    [/\bassert!\s*\([^;]*?\.(?:is_ok|is_err)\(\)\s*\|\|\s*[^;]*?\.(?:is_ok|is_err)\(\)\s*[,)]/, 'is_ok() || is_err()'],
  ],
  js: [
    [new RegExp(String.raw`\bassert(?:\.ok)?\s*\(\s*(?:true|!\s*false|1)\s*[,)]`), 'assert.ok(true)'],
    [/\bassert(?:\.ok)?\s*\([^;]*?(?:\.length|\.count\(\)\)?|count\(\)\)?|\.size)\s*>=\s*0\s*[,)]/, 'a count or length >= 0'],
    [new RegExp(String.raw`\bassert\.(?:equal|strictEqual|deepEqual|deepStrictEqual)\s*\(\s*(${LITERAL})\s*,\s*\1\s*[,)]`), 'assert.equal of a literal with itself'],
    [/\bexpect\s*\(\s*(?:true|1)\s*\)\s*\.\s*(?:toBe|toEqual|toBeTruthy)\s*\(\s*(?:true|1)?\s*\)/, 'expect(true).toBe(true)'],
  ],
};

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
    for (const [re, why] of CONSTANT[lang]) {
      const m = re.exec(window);
      if (m && m.index < lines[i].length) findings.push({ line: i + 1, why: `assertion on a constant (${why})` });
    }
  });
  return findings;
}

function testFiles() {
  const rust = walk(ROOT, (p) => p.endsWith('.rs')).filter((p) => /#\[(?:tokio::)?test\b/.test(readFileSync(p, 'utf8')));
  const js = [
    ...walk(join(ROOT, 'ui', 'src'), (p) => /\.test\.(?:ts|js|mjs)$/.test(p)),
    ...walk(join(ROOT, 'e2e', 'browser', 'tests'), (p) => p.endsWith('.mjs')),
    join(ROOT, 'e2e', 'desktop', 'driver.mjs'),
  ];
  return [...rust.map((p) => [p, 'rust']), ...js.map((p) => [p, 'js'])];
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
    ['js', "it('x', () => { expect(true).toBe(true); });", ['assertion on a constant (expect(true).toBe(true))']],
    ['js', "test('x', () => { assert.equal('a', 'a'); });", ['assertion on a constant (assert.equal of a literal with itself)']],
    ['js', "test('x', () => { assert.equal(rows.length, 3); expect(f()).toBe(2); });", []],
  ];
  let bad = 0;
  for (const [lang, text, want] of cases) {
    const got = lint(text, lang).map((f) => f.why);
    if (JSON.stringify(got) !== JSON.stringify(want)) {
      bad++;
      console.error(`self-test: ${JSON.stringify(text)}\n  want ${JSON.stringify(want)}\n  got  ${JSON.stringify(got)}`);
    }
  }
  console.log(`lint-tests self-test: ${cases.length - bad}/${cases.length} cases right`);
  return bad === 0;
}

if (process.argv.includes('--self-test')) {
  process.exit(selfTest() ? 0 : 1);
}
if (!selfTest()) process.exit(1);
const files = testFiles();
let count = 0;
for (const [path, lang] of files) {
  for (const f of lint(readFileSync(path, 'utf8'), lang)) {
    console.error(`${relative(ROOT, path)}:${f.line}: ${f.why}`);
    count++;
  }
}
console.log(`lint-tests: ${files.length} test files read, ${count} finding${count === 1 ? '' : 's'}`);
process.exit(count === 0 ? 0 : 1);
