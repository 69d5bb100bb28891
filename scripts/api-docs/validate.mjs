#!/usr/bin/env node
// Check the pipeline's API documents with the official parsers, pinned in package-lock.json next to this file:
//
//   node scripts/api-docs/validate.mjs asyncapi schemas/asyncapi.json   # @asyncapi/parser (AsyncAPI 3.0)
//   node scripts/api-docs/validate.mjs openapi docs/openapi.json        # @readme/openapi-parser (OpenAPI 3.0/3.1)
//   node scripts/api-docs/validate.mjs install                          # what scripts/setup runs
//
// A check prints one JSON object on stdout: the file, the parser and its version, the number of errors,
// warnings, infos and hints, every diagnostic (severity, code, message, path, source file, line), and for a
// valid AsyncAPI document a summary of what the parser read (channels with their addresses, messages and Kafka
// bindings; messages with their `ce_type` header and payload schema). Exit 0: no errors; 1: errors; 2: the
// command could not run (usage, packages not installed), with the reason on stderr.
//
// The packages live outside the repository, in ${PIPELINE_CACHE_DIR:-~/.cache/pipeline}/node/api-docs-<the
// first 16 hex digits of package-lock.json's SHA-256>/node_modules, installed by `install` (`npm ci
// --ignore-scripts`, once per lock file; nothing is fetched when that directory exists). Node 18 or newer
// (Debian 12's; @readme/openapi-parser declares Node 20 but works on 18.20, npm only warns).
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));
const LOCK = join(HERE, 'package-lock.json');
const SETUP = 'scripts/setup (or: node scripts/api-docs/validate.mjs install)';
const SEVERITIES = ['error', 'warning', 'info', 'hint']; // Spectral's DiagnosticSeverity 0..3

function installDir() {
  const key = createHash('sha256').update(readFileSync(LOCK)).digest('hex').slice(0, 16);
  const cache = (process.env.PIPELINE_CACHE_DIR || join(homedir(), '.cache', 'pipeline'))
    .replace(/^~(?=$|\/)/, homedir()); // expanded as the pipeline's Settings.cache_dir does
  return join(resolve(cache), 'node', `api-docs-${key}`);
}

function fail(message) {
  process.stderr.write(`validate.mjs: ${message}\n`);
  process.exit(2);
}

function install() {
  const dir = installDir();
  if (existsSync(join(dir, 'node_modules', '.package-lock.json'))) {
    process.stderr.write(`[api-docs] packages present in ${dir}\n`);
    return;
  }
  const staging = `${dir}.tmp-${process.pid}`;
  rmSync(staging, { recursive: true, force: true });
  mkdirSync(staging, { recursive: true });
  for (const name of ['package.json', 'package-lock.json']) copyFileSync(join(HERE, name), join(staging, name));
  process.stderr.write(`[api-docs] npm ci into ${dir}\n`);
  // --ignore-scripts: no dependency needs an install script (one would only send usage analytics).
  const npm = spawnSync('npm', ['ci', '--ignore-scripts', '--no-audit', '--no-fund', '--prefer-offline',
    '--loglevel=error'], { cwd: staging, stdio: ['ignore', 2, 2] });
  if (npm.error || npm.status !== 0) {
    rmSync(staging, { recursive: true, force: true });
    fail(`npm ci failed in ${staging} (${npm.error ? npm.error.message : `exit ${npm.status}`}); is npm installed?`);
  }
  try {
    renameSync(staging, dir);
  } catch (error) {
    rmSync(staging, { recursive: true, force: true }); // a concurrent install finished first
    if (!existsSync(join(dir, 'node_modules', '.package-lock.json'))) throw error;
  }
}

function loader() {
  const dir = installDir();
  if (!existsSync(join(dir, 'node_modules', '.package-lock.json'))) {
    fail(`the parsers are not installed (no ${dir}): run ${SETUP}`);
  }
  const require = createRequire(join(dir, 'package.json'));
  const version = (name) => JSON.parse(readFileSync(join(dir, 'node_modules', name, 'package.json'))).version;
  return { require, version };
}

function report(kind, file, parser, diagnostics, extra = {}) {
  const counts = Object.fromEntries(SEVERITIES.map((s) => [`${s}s`, 0]));
  for (const d of diagnostics) counts[`${d.severity}s`] += 1;
  const out = { kind, file, parser, valid: counts.errors === 0, ...counts, diagnostics, ...extra };
  process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
  process.exitCode = counts.errors === 0 ? 0 : 1;
}

function summary(document) {
  const channels = {};
  for (const channel of document.channels()) {
    const bindings = Object.fromEntries(channel.bindings().all().map((b) => [b.protocol(), b.value()]));
    channels[channel.id()] = {
      address: channel.address(),
      messages: channel.messages().all().map((m) => m.id()),
      bindings,
    };
  }
  const messages = {};
  for (const message of document.components().messages()) {
    const headers = message.hasHeaders() ? message.headers().json() : {};
    const payload = message.hasPayload() ? message.payload().json() : {};
    messages[message.id()] = {
      ce_type: headers.properties?.ce_type?.const ?? null,
      headers_required: headers.required ?? [],
      payload: { $id: payload.$id ?? null, title: payload.title ?? null, required: payload.required ?? [] },
    };
  }
  return { channels, messages };
}

async function asyncapi(file) {
  const { require, version } = loader();
  const { Parser, fromFile } = require('@asyncapi/parser');
  const { document, diagnostics } = await fromFile(new Parser(), file).parse();
  const found = diagnostics.map((d) => ({
    severity: SEVERITIES[d.severity] ?? String(d.severity),
    code: d.code,
    message: d.message,
    path: d.path,
    source: d.source ?? file,
    line: d.range ? d.range.start.line + 1 : null,
  }));
  const extra = document ? { document: summary(document) } : {};
  report('asyncapi', file, `@asyncapi/parser ${version('@asyncapi/parser')}`, found, extra);
}

async function openapi(file) {
  const { require, version } = loader();
  const { validate } = require('@readme/openapi-parser');
  let found;
  try {
    const result = await validate(file);
    found = [
      ...(result.valid ? [] : result.errors).map((e) => ({ severity: 'error', code: null, message: e.message })),
      ...result.warnings.map((w) => ({ severity: 'warning', code: null, message: w.message })),
    ];
  } catch (error) { // not JSON or YAML, an unresolvable $ref: the parser throws instead of reporting
    found = [{ severity: 'error', code: error.name ?? null, message: error.message }];
  }
  report('openapi', file, `@readme/openapi-parser ${version('@readme/openapi-parser')}`, found);
}

const [command, target] = process.argv.slice(2);
const checks = { asyncapi, openapi };
if (command === 'install') {
  install();
} else if (command in checks && target) {
  const file = resolve(target);
  if (!existsSync(file)) fail(`no such file: ${file}`);
  try {
    await checks[command](file);
  } catch (error) { // the parser itself failed (not the document): no report
    fail(`${command} parser failed on ${file}: ${error.stack ?? error}`);
  }
} else {
  fail('usage: validate.mjs asyncapi FILE | openapi FILE | install');
}
