#!/usr/bin/env node
// Records (or, with --check, verifies) each corpus case's expected.json by running REAL Nx.
//
// A case is a directory with:
//   base/        the workspace at the base commit (real files)
//   edits.json   how head differs: {"write": {path: content}, "delete": [path], "rename": [[from, to]]}
//   expected.json  real Nx's answer: {"affected": [...]} (nx's own order) or {"error": true}
//
// For each case this builds a real git repo (commit base, apply edits, commit head), links a
// node_modules holding nx@24 + typescript, and runs
//   nx show projects --affected --base=<base> --head=<head> --json
// with NX_DAEMON=false NX_NO_CLOUD=true NX_TUI=false.
//
// Usage: node record.mjs [--check] [case-name...]
// Nx is installed once with npm into $KILN_NX_REAL_DIR (default <repo>/target/nx-real).
// If npm cannot reach the registry and nx is not installed yet, prints SKIP and exits 0.
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(here, '../../../..');
const nxDir = process.env.KILN_NX_REAL_DIR || path.join(repoRoot, 'target/nx-real');
const NX_VERSION = '24.0.6';
const args = process.argv.slice(2);
const check = args.includes('--check');
const only = args.filter((a) => !a.startsWith('--'));

function ensureNx() {
  const bin = path.join(nxDir, 'node_modules/.bin/nx');
  if (fs.existsSync(bin)) return true;
  fs.mkdirSync(nxDir, { recursive: true });
  fs.writeFileSync(path.join(nxDir, 'package.json'), '{"name":"nx-real","private":true}\n');
  const r = spawnSync('npm', ['install', '--no-audit', '--no-fund', `nx@${NX_VERSION}`, 'typescript@5'], {
    cwd: nxDir, encoding: 'utf8',
  });
  if (r.status !== 0) {
    if (/ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ETIMEDOUT|network/i.test(r.stderr)) {
      console.log(`SKIP: npm cannot reach the registry, so real Nx cannot be installed into ${nxDir}`);
      process.exit(0);
    }
    console.error(r.stderr);
    throw new Error(`npm install nx@${NX_VERSION} failed`);
  }
  return true;
}

function copyTree(src, dst) {
  for (const e of fs.readdirSync(src, { withFileTypes: true })) {
    const s = path.join(src, e.name), d = path.join(dst, e.name);
    if (e.isDirectory()) { fs.mkdirSync(d, { recursive: true }); copyTree(s, d); }
    else fs.copyFileSync(s, d);
  }
}

function git(cwd, ...a) {
  return execFileSync('git', a, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
}

function runCase(dir) {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-nx-case-'));
  try {
    copyTree(path.join(dir, 'base'), tmp);
    git(tmp, 'init', '-q', '-b', 'main');
    git(tmp, 'config', 'user.email', 'corpus@kiln.invalid');
    git(tmp, 'config', 'user.name', 'corpus');
    fs.appendFileSync(path.join(tmp, '.git/info/exclude'), '\nnode_modules\n.nx\n');
    git(tmp, "add", "-A", "-f");
    git(tmp, 'commit', '-q', '--allow-empty', '-m', 'base');
    const edits = JSON.parse(fs.readFileSync(path.join(dir, 'edits.json'), 'utf8'));
    for (const [from, to] of edits.rename ?? []) {
      fs.mkdirSync(path.dirname(path.join(tmp, to)), { recursive: true });
      fs.renameSync(path.join(tmp, from), path.join(tmp, to));
    }
    for (const p of edits.delete ?? []) fs.rmSync(path.join(tmp, p), { recursive: true });
    for (const [p, content] of Object.entries(edits.write ?? {})) {
      fs.mkdirSync(path.dirname(path.join(tmp, p)), { recursive: true });
      fs.writeFileSync(path.join(tmp, p), typeof content === 'string' ? content : JSON.stringify(content, null, 2) + '\n');
    }
    git(tmp, "add", "-A", "-f");
    git(tmp, 'commit', '-q', '--allow-empty', '-m', 'head');
    fs.symlinkSync(path.join(nxDir, 'node_modules'), path.join(tmp, 'node_modules'));
    const r = spawnSync(path.join(nxDir, 'node_modules/.bin/nx'),
      ['show', 'projects', '--affected', '--base=HEAD~1', '--head=HEAD', '--json'], {
        cwd: tmp, encoding: 'utf8',
        env: { ...process.env, NX_DAEMON: 'false', NX_NO_CLOUD: 'true', NX_TUI: 'false', CI: 'true', NX_SKIP_NX_CACHE: 'true' },
      });
    if (r.status !== 0) return { error: true, nx_message: firstError(r.stderr + r.stdout) };
    const line = r.stdout.trim().split('\n').filter((l) => l.startsWith('[')).pop();
    if (!line) return { error: true, nx_message: firstError(r.stderr + r.stdout) };
    return { affected: JSON.parse(line) };
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

function firstError(text) {
  const lines = text.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('at '));
  return lines.slice(0, 3).join(' ').slice(0, 300);
}

ensureNx();
const cases = fs.readdirSync(here, { withFileTypes: true })
  .filter((e) => e.isDirectory() && fs.existsSync(path.join(here, e.name, 'edits.json')))
  .map((e) => e.name).filter((n) => only.length === 0 || only.includes(n)).sort();
let failed = 0;
for (const name of cases) {
  const dir = path.join(here, name);
  const got = runCase(dir);
  const text = JSON.stringify(got, null, 2) + '\n';
  const file = path.join(dir, 'expected.json');
  const old = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : null;
  if (check) {
    if (old !== text) { failed++; console.log(`DIFF ${name}\n  recorded: ${old?.replace(/\s+/g, ' ')}\n  real nx:  ${text.replace(/\s+/g, ' ')}`); }
    else console.log(`ok   ${name}`);
  } else {
    fs.writeFileSync(file, text);
    console.log(`${old === text ? 'same' : 'NEW '} ${name}: ${JSON.stringify(got)}`);
  }
}
if (failed) { console.log(`${failed} case(s) differ from real Nx ${NX_VERSION}`); process.exit(1); }
