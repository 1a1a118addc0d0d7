import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ERROR_STATUS } from '@trajgate/sdk/contract';
import type { Dtype } from '@trajgate/sdk/wire/dtypes';
import { encodeSafetensors, type TensorData } from '@trajgate/sdk/wire/safetensors';
import { createSafetensorsDecoder } from '../src/ingest/safetensors-decoder.js';
import { assertDecodedAs, decode } from './helpers/checkpoints.js';
import { startTestServer } from './helpers/gateway.js';

/**
 * The Python client (clients/python) against a real gateway: its unittest suite, run with the
 * interpreter on PATH, must pass; its copy of the error catalogue must match the contract; the golden
 * safetensors files it shares with the SDK must still be what each side writes and reads; and it must
 * install from the repository with pip, offline.
 */
const PY_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../clients/python');
const GOLDEN = path.join(PY_DIR, 'tests/golden');

interface Ran {
  code: number | null;
  output: string;
}

/** Runs a command to its end (killed after `timeoutMs`), with stdout and stderr together. */
function run(cmd: string, args: string[], options: { cwd: string; env?: Record<string, string>; timeoutMs: number }) {
  return new Promise<Ran>((resolve, reject) => {
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('TRAJGATE_')));
    const child = spawn(cmd, args, {
      cwd: options.cwd,
      env: { ...env, PYTHONDONTWRITEBYTECODE: '1', PYTHONUNBUFFERED: '1', ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (d: Buffer) => {
      output += d.toString('utf8');
    });
    child.stderr.on('data', (d: Buffer) => {
      output += d.toString('utf8');
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

interface GoldenSpec {
  metadata: Record<string, string>;
  tensors: { name: string; dtype: Dtype; shape: number[]; data: string }[];
}

async function goldenSpec(): Promise<{ tensors: TensorData[]; metadata: Record<string, string> }> {
  const spec = JSON.parse(await readFile(path.join(GOLDEN, 'tensors.json'), 'utf8')) as GoldenSpec;
  return {
    metadata: spec.metadata,
    tensors: spec.tensors.map((t) => ({
      name: t.name,
      dtype: t.dtype,
      shape: t.shape,
      data: new Uint8Array(Buffer.from(t.data, 'base64')),
    })),
  };
}

describe('Python client', () => {
  let server: Awaited<ReturnType<typeof startTestServer>>;

  before(async () => {
    server = await startTestServer();
  });

  after(async () => {
    await server.close();
  });

  it('passes its unittest suite against a real gateway', { timeout: 110_000 }, async (t) => {
    const ran = await run('python3', ['-m', 'unittest', 'discover', '-s', 'tests', '-t', '.', '-v'], {
      cwd: PY_DIR,
      env: { TRAJGATE_TEST_URL: server.url },
      timeoutMs: 100_000,
    });
    assert.equal(ran.code, 0, `python3 -m unittest failed (exit ${ran.code}):\n${ran.output.slice(-8000)}`);
    assert.match(ran.output, /\nOK\b/);
    const summary = /Ran (\d+) tests? in [\d.]+s/.exec(ran.output);
    assert.ok(summary && Number(summary[1]) >= 20, `expected the whole suite to run:\n${ran.output.slice(-2000)}`);
    t.diagnostic(summary[0]);
  });

  it('has the error catalogue of the contract', async () => {
    const ran = await run(
      'python3',
      ['-c', 'import json, trajgate; print(json.dumps(trajgate.ERROR_STATUS, sort_keys=True))'],
      { cwd: PY_DIR, timeoutMs: 30_000 },
    );
    assert.equal(ran.code, 0, ran.output);
    assert.deepEqual(JSON.parse(ran.output), ERROR_STATUS);
  });

  it('shares golden safetensors files with the SDK and the gateway', async () => {
    const { tensors, metadata } = await goldenSpec();
    const sdkWritten = await readFile(path.join(GOLDEN, 'sdk.safetensors'));
    const pythonWritten = await readFile(path.join(GOLDEN, 'python.safetensors'));
    // The SDK still writes sdk.safetensors (which the Python tests read) ...
    assert.deepEqual(encodeSafetensors(tensors, metadata), sdkWritten);
    // ... and the gateway's decoder reads what the Python client wrote, in any chunking.
    for (const chunking of [pythonWritten.length, 1, 7, 64]) {
      assertDecodedAs(decode(createSafetensorsDecoder, pythonWritten, chunking), tensors, metadata);
    }
    // The two writers agree byte for byte (key order, compact JSON, padding, UTF-8 names).
    assert.deepEqual(pythonWritten, sdkWritten);
  });

  it('installs from the repository with pip, offline', { timeout: 110_000 }, async () => {
    const target = await mkdtemp(path.join(os.tmpdir(), 'trajgate-pip-'));
    try {
      const install = await run(
        'python3',
        ['-m', 'pip', 'install', '--no-deps', '--no-index', '--quiet', '--target', target, PY_DIR],
        { cwd: os.tmpdir(), env: { PIP_DISABLE_PIP_VERSION_CHECK: '1' }, timeoutMs: 100_000 },
      );
      assert.equal(install.code, 0, install.output);
      const check = await run(
        'python3',
        [
          '-c',
          'import importlib.metadata as m, json, trajgate; print(json.dumps([trajgate.__file__, trajgate.__version__, m.version("trajgate")]))',
        ],
        { cwd: os.tmpdir(), env: { PYTHONPATH: target }, timeoutMs: 30_000 },
      );
      assert.equal(check.code, 0, check.output);
      const [file, version, installed] = JSON.parse(check.output) as string[];
      assert.ok(file.startsWith(target), `imported from ${file}, not the installed copy`);
      assert.equal(installed, version);
    } finally {
      await rm(target, { recursive: true, force: true });
    }
  });
});
