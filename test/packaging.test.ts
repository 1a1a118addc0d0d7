import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it, test } from 'node:test';
import type { Checkpoint, MetricPoint, UploadResult } from '@trajgate/sdk';
import { encodeSafetensors } from '@trajgate/sdk/wire/safetensors';
import { startTestServer } from './helpers/gateway.js';

/*
 * What users install and run, built for real: the packed SDK, then the compiled `trajgate` command. One
 * file, so the two builds of packages/sdk/dist run one after the other, never at once.
 */

/**
 * The SDK as training code gets it: `npm pack` of packages/sdk (prepack builds dist/), installed into an
 * empty project, must bring msgpackr and nothing of the gateway's server, and must work from plain `node`
 * against a real gateway.
 */

const root = path.resolve(import.meta.dirname, '..');
const sdkDir = path.join(root, 'packages/sdk');
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';

/** Never in the consumer's tree: the gateway's dependencies, and tfjs (an optional peer the user brings). */
const FORBIDDEN = [/^express$/, /^@aws-sdk\//, /^better-sqlite3$/, /^kysely$/, /^zod$/, /^pino$/, /^@tensorflow\//];

/**
 * The environment for child processes: without what `node --test` and `npm run` set for their own children
 * (so npm does not take the repository's workspace for the consumer's project).
 */
const childEnv: NodeJS.ProcessEnv = Object.fromEntries(
  Object.entries(process.env).filter(
    ([key]) =>
      key !== 'NODE_TEST_CONTEXT' &&
      key !== 'INIT_CWD' &&
      !/^npm_(package_|lifecycle_|command$|config_(local_prefix|workspaces?|include_workspace_root)$)/i.test(key),
  ),
);

interface Ran {
  stdout: string;
  stderr: string;
  ms: number;
}

function run(command: string, args: string[], cwd: string, timeoutMs = 180_000): Promise<Ran> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    execFile(
      command,
      args,
      { cwd, env: childEnv, timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024, encoding: 'utf8' },
      (err, stdout, stderr) => {
        const ms = Math.round(performance.now() - started);
        if (err) {
          const how = err.killed ? `killed after ${ms} ms (timeout ${timeoutMs} ms)` : `exit code ${err.code}`;
          reject(new Error(`\`${command} ${args.join(' ')}\` in ${cwd}: ${how}\n${stdout}\n${stderr}`));
        } else resolve({ stdout, stderr, ms });
      },
    );
  });
}

/** name@version of every package under `dir`'s node_modules, nested ones included. */
async function installedPackages(dir: string): Promise<string[]> {
  const found: string[] = [];
  const entries = async (d: string) =>
    (await readdir(d, { withFileTypes: true }).catch(() => [])).filter((e) => !e.name.startsWith('.'));
  const visit = async (modules: string): Promise<void> => {
    for (const entry of await entries(modules)) {
      const dirs = entry.name.startsWith('@')
        ? (await entries(path.join(modules, entry.name))).map((e) => path.join(modules, entry.name, e.name))
        : [path.join(modules, entry.name)];
      for (const pkgDir of dirs) {
        const manifest = JSON.parse(await readFile(path.join(pkgDir, 'package.json'), 'utf8')) as {
          name: string;
          version: string;
        };
        found.push(`${manifest.name}@${manifest.version}`);
        await visit(path.join(pkgDir, 'node_modules'));
      }
    }
  };
  await visit(path.join(dir, 'node_modules'));
  return found.sort();
}

interface LsNode {
  version?: string;
  dependencies?: Record<string, LsNode>;
}

/** The packages `npm ls --all --json` reports as installed (a missing optional peer comes without a version). */
function lsInstalled(node: LsNode, into = new Set<string>()): Set<string> {
  for (const [name, child] of Object.entries(node.dependencies ?? {})) {
    if (child.version !== undefined) into.add(`${name}@${child.version}`);
    lsInstalled(child, into);
  }
  return into;
}

const nameOf = (spec: string) => spec.slice(0, spec.lastIndexOf('@'));

/** What the consumer runs with plain node: the packed SDK against the gateway at argv[2]. */
const CONSUMER_SCRIPT = `
import { TrajgateClient, TrajgateError } from '@trajgate/sdk';
import { ERROR_CODES } from '@trajgate/sdk/contract';

const client = new TrajgateClient({ url: process.argv[2], retry: { retries: 2, baseDelayMs: 50 } });
let uploaded = null;
const run = client.run('sdk-consumer', { plannedSteps: 100, trainSize: 1000, onUploaded: (r) => { uploaded = r; } });
for (let step = 1; step <= 5; step++) await run.log({ step, trainLoss: 1 / step, lr: 0.1 });
const kernel = Float32Array.from({ length: 256 }, (_, i) => Math.sin(i / 10));
await run.checkpoint(5, {
  'dense/kernel': { dtype: 'F32', shape: [16, 16], data: kernel },
  'dense/bias': { dtype: 'F32', shape: [16], data: new Float32Array(16).fill(0.5) },
});
await run.close();

let notFound = null;
try {
  await client.getCheckpoint('sdk-consumer', 999);
} catch (err) {
  notFound = err instanceof TrajgateError ? err.code : String(err);
}
const paged = [];
for await (const point of client.metrics('sdk-consumer', { pageSize: 2 })) paged.push(point.step);
const listed = await client.listCheckpoints('sdk-consumer', { tensors: true });
console.log(JSON.stringify({
  result: uploaded,
  paged,
  listedTensors: listed.map((c) => c.tensors.length),
  hasErrorCodes: ERROR_CODES.length > 0,
  notFound,
  resolved: import.meta.resolve('@trajgate/sdk'),
}));
`;

test('the packed SDK installs alone and works from plain node', { timeout: 600_000 }, async (t) => {
  const temp = await mkdtemp(path.join(os.tmpdir(), 'trajgate-sdk-package-'));
  t.after(() => rm(temp, { recursive: true, force: true }));
  const packDir = path.join(temp, 'pack');
  const consumer = path.join(temp, 'consumer');
  let tarball = '';
  let installedOk = false;

  await t.test('npm pack builds and ships dist/, README.md and every export', async (t) => {
    await mkdir(packDir);
    const packed = await run(npm, ['pack', '--json', '--pack-destination', packDir], sdkDir);
    const [report] = JSON.parse(packed.stdout) as { filename: string; size: number; files: { path: string }[] }[];
    tarball = path.join(packDir, report.filename);
    const files = new Set(report.files.map((f) => f.path));
    t.diagnostic(`npm pack: ${packed.ms} ms, ${report.filename}, ${report.size} bytes, ${files.size} files`);

    const manifest = JSON.parse(await readFile(path.join(sdkDir, 'package.json'), 'utf8')) as {
      exports: Record<string, string | Record<string, string>>;
    };
    const targets = Object.values(manifest.exports).flatMap((v) => (typeof v === 'string' ? [v] : Object.values(v)));
    for (const target of targets) {
      const file = target.replace(/^\.\//, '').replace('*', 'native-format');
      assert.ok(files.has(file), `export target ${target} (${file}) is not in the tarball`);
    }
    for (const file of ['README.md', 'package.json', 'dist/index.js', 'dist/index.d.ts', 'src/index.ts']) {
      assert.ok(files.has(file), `${file} is not in the tarball`);
    }
    const strays = [...files].filter((f) => !/^(dist\/|src\/|README\.md$|package\.json$)/.test(f));
    assert.deepEqual(strays, [], 'files outside dist/, src/, README.md and package.json');
  });

  await t.test('installed into an empty project, it brings msgpackr and nothing of the gateway', async (t) => {
    assert.ok(tarball, 'nothing to install: npm pack failed');
    await mkdir(consumer);
    const project = { name: 'sdk-consumer', private: true, type: 'module' };
    await writeFile(path.join(consumer, 'package.json'), JSON.stringify(project));
    const installed = await run(npm, ['install', tarball, '--prefer-offline', '--no-audit', '--no-fund'], consumer);
    t.diagnostic(`npm install: ${installed.ms} ms`);

    const onDisk = await installedPackages(consumer);
    t.diagnostic(`consumer's packages (${onDisk.length}): ${onDisk.join(', ')}`);
    const ls = await run(npm, ['ls', '--all', '--json'], consumer);
    assert.deepEqual([...lsInstalled(JSON.parse(ls.stdout) as LsNode)].sort(), onDisk, 'npm ls disagrees with disk');

    const names = onDisk.map(nameOf);
    assert.ok(names.includes('@trajgate/sdk'), '@trajgate/sdk is not installed');
    assert.ok(names.includes('msgpackr'), 'msgpackr is not installed');
    const forbidden = names.filter((name) => FORBIDDEN.some((re) => re.test(name)));
    assert.deepEqual(forbidden, [], 'gateway or tfjs packages in the SDK consumer');
    // Nor any other runtime dependency of the gateway besides the one the SDK shares.
    const gateway = JSON.parse(await readFile(path.join(root, 'package.json'), 'utf8')) as {
      dependencies: Record<string, string>;
      optionalDependencies?: Record<string, string>;
    };
    const serverOnly = Object.keys({ ...gateway.dependencies, ...gateway.optionalDependencies }).filter(
      (name) => name !== 'msgpackr' && name !== '@trajgate/sdk',
    );
    assert.deepEqual(
      names.filter((name) => serverOnly.includes(name)),
      [],
      'gateway dependencies in the SDK consumer',
    );
    installedOk = true;
  });

  await t.test('plain node in the consumer uploads a checkpoint and metrics to a real gateway', async (t) => {
    assert.ok(installedOk, 'nothing to run: the install failed');
    const server = await startTestServer();
    t.after(() => server.close());
    await writeFile(path.join(consumer, 'main.js'), CONSUMER_SCRIPT);
    const ran = await run(process.execPath, ['main.js', server.url], consumer, 60_000);
    t.diagnostic(`consumer script: ${ran.ms} ms`);
    const out = JSON.parse(ran.stdout.trim().split('\n').at(-1) ?? '') as {
      result: UploadResult | null;
      paged: number[];
      listedTensors: number[];
      hasErrorCodes: boolean;
      notFound: string | null;
      resolved: string;
    };
    assert.ok(out.resolved.startsWith(`file://${consumer}/node_modules/@trajgate/sdk/dist/`), out.resolved);
    assert.equal(out.hasErrorCodes, true);
    assert.equal(out.notFound, 'checkpoint_not_found');
    assert.deepEqual(out.paged, [1, 2, 3, 4, 5], 'the metric series read two points a page');
    assert.deepEqual(out.listedTensors, [2], 'the checkpoint listed with its tensor table');
    const result = out.result;
    assert.ok(result, 'onUploaded was not called');
    assert.equal(result.run, 'sdk-consumer');
    assert.equal(result.step, 5);
    assert.equal(result.format, 'native');
    assert.match(result.sha256, /^[0-9a-f]{64}$/);

    const api = `${server.url}/v1/runs/sdk-consumer`;
    const record = (await (await fetch(`${api}/checkpoints/5`)).json()) as Checkpoint;
    assert.equal(record.sha256, result.sha256);
    assert.equal(record.status, 'kept');
    assert.deepEqual(record.tensors.map((x) => x.name).sort(), ['dense/bias', 'dense/kernel']);
    const content = await fetch(`${api}/checkpoints/5/content`);
    assert.equal(content.status, 200);
    const bytes = new Uint8Array(await content.arrayBuffer());
    assert.equal(bytes.length, record.bytes);
    assert.equal(createHash('sha256').update(bytes).digest('hex'), result.sha256);

    const metrics = (await (await fetch(`${api}/metrics`)).json()) as { items: MetricPoint[] };
    assert.deepEqual(
      metrics.items.map((p) => [p.step, p.trainLoss, p.lr]),
      [1, 2, 3, 4, 5].map((step) => [step, 1 / step, 0.1]),
    );
    t.diagnostic(`stored ${record.bytes} bytes, sha256 ${record.sha256}; ${metrics.items.length} metric points`);
  });
});

const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');

/**
 * Runs the built `trajgate` binary (dist/cli/main.js, what `npm run build` produces and `bin` points at).
 * Asynchronously: the gateway it talks to runs in this process.
 */
function trajgate(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [path.join(root, 'dist/cli/main.js'), ...args],
      { env: { ...process.env, ...env }, timeout: 30_000 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

/** A port nothing listens on. */
async function closedPort(): Promise<number> {
  const probe = net.createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as net.AddressInfo;
  await new Promise((resolve) => probe.close(resolve));
  return port;
}

describe('trajgate CLI (built binary)', () => {
  let server: Awaited<ReturnType<typeof startTestServer>>;
  let dir: string;
  before(async () => {
    // The gateway's build resolves @trajgate/sdk through its compiled package, so the SDK builds first.
    for (const project of ['packages/sdk/tsconfig.build.json', 'tsconfig.build.json']) {
      const build = spawnSync(process.execPath, [tsc, '-p', path.join(root, project)], { encoding: 'utf8' });
      assert.equal(build.status, 0, `build of ${project} failed:\n${build.stdout}${build.stderr}`);
    }
    server = await startTestServer();
    dir = await mkdtemp(path.join(os.tmpdir(), 'trajgate-cli-'));
  });
  after(async () => {
    await server.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('uploads with a progress display, lists as JSON, downloads and verifies', async () => {
    const file = path.join(dir, 'model.safetensors');
    const w = new Float32Array(200_000).map((_, i) => Math.sin(i));
    await writeFile(
      file,
      encodeSafetensors([{ name: 'w', dtype: 'F32', shape: [200_000], data: new Uint8Array(w.buffer) }]),
    );
    const upload = await trajgate(['checkpoints', 'upload', 'cli-run', '100', file], { TRAJGATE_URL: server.url });
    assert.equal(upload.code, 0, upload.stderr);
    assert.match(upload.stderr, /upload \[.*\] 100% 800\d+\/800\d+ bytes/);
    assert.match(upload.stdout, /step 100: kept/);

    const ls = await trajgate(['--url', server.url, '--json', 'checkpoints', 'ls', 'cli-run']);
    assert.equal(ls.code, 0, ls.stderr);
    const items = JSON.parse(ls.stdout) as { step: number; status: string; tensors?: unknown[] }[];
    assert.deepEqual(
      items.map((c) => [c.step, c.status, c.tensors]),
      [[100, 'kept', undefined]],
    );
    const withTensors = await trajgate(['--url', server.url, '--json', 'checkpoints', 'ls', 'cli-run', '--tensors']);
    assert.equal(withTensors.code, 0, withTensors.stderr);
    const [listed] = JSON.parse(withTensors.stdout) as { tensors: { name: string }[] }[];
    assert.deepEqual(
      listed.tensors.map((x) => x.name),
      ['w'],
    );

    const table = await trajgate(['--url', server.url, 'checkpoints', 'ls', 'cli-run']);
    assert.match(table.stdout, /^step\s+status\s+classes/);

    const out = path.join(dir, 'back.safetensors');
    const download = await trajgate(['--url', server.url, 'checkpoints', 'download', 'cli-run', '100', out]);
    assert.equal(download.code, 0, download.stderr);
    assert.match(download.stdout, /verified/);
  });

  it('says what is wrong in one line with a meaningful exit code', async () => {
    const port = await closedPort();
    const unreachable = await trajgate(['--url', `http://127.0.0.1:${port}`, 'runs', 'ls']);
    assert.equal(unreachable.code, 3);
    assert.equal(unreachable.stderr.trim().split('\n').length, 1);
    assert.match(unreachable.stderr, new RegExp(`cannot reach trajgate at http://127.0.0.1:${port}: .*ECONNREFUSED`));

    const refused = await trajgate(['--url', server.url, 'runs', 'show', 'no-such-run']);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /run_not_found/);

    const usage = await trajgate(['--url', server.url, 'checkpoints', 'pin', 'cli-run', 'abc']);
    assert.equal(usage.code, 2);
  });
});

describe('trajgate CLI from a checkout (bin/trajgate.js, nothing built)', () => {
  it('runs from the TypeScript sources, as `npx trajgate` does after `npm ci`', async () => {
    const result = await new Promise<{ code: number; stdout: string }>((resolve) => {
      execFile(process.execPath, [path.join(root, 'bin/trajgate.js'), '--help'], { cwd: os.tmpdir() }, (err, stdout) =>
        resolve({ code: err ? -1 : 0, stdout }),
      );
    });
    assert.equal(result.code, 0);
    assert.match(result.stdout, /Usage: trajgate/);
    assert.match(result.stdout, /checkpoints/);
  });
});
