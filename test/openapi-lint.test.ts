import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync, realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, it } from 'node:test';
import { parse } from 'yaml';

/**
 * `redocly lint` (the recommended ruleset as redocly.yaml adjusts it) over openapi/trajgate.yaml must
 * report nothing, not even warnings. It runs the locally installed CLI offline: telemetry and the update
 * check are off, and a preloaded guard refuses every socket and DNS lookup, so a lint that tried to reach
 * the network (a remote $ref, telemetry) fails here instead of hanging or leaking.
 */
const root = fileURLToPath(new URL('..', import.meta.url));
const cli = realpathSync(new URL('../node_modules/.bin/redocly', import.meta.url));
const NETWORK_MARK = 'openapi-lint: network access refused:';
const networkGuard = `
import dns from 'node:dns';
import net from 'node:net';
const refuse = (what) => {
  process.stderr.write(${JSON.stringify(NETWORK_MARK)} + ' ' + what + '\\n');
  throw new Error('network access is disabled for the lint (' + what + ')');
};
net.Socket.prototype.connect = function (options, port) {
  refuse(typeof options === 'object' && options ? String(options.host ?? options.path) + ':' + String(options.port) : String(options) + ':' + String(port));
};
dns.lookup = (host) => refuse('lookup ' + host);
`;

interface LintProblem {
  ruleId: string;
  severity: string;
  message: string;
  location?: { pointer?: string; start?: { line: number; col: number } }[];
}
interface LintReport {
  totals: { errors: number; warnings: number; ignored: number };
  problems: LintProblem[];
}

async function lint(): Promise<{ report: LintReport; stderr: string }> {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    REDOCLY_TELEMETRY: 'off',
    REDOCLY_SUPPRESS_UPDATE_NOTICE: 'true',
  };
  delete env.NODE_TEST_CONTEXT;
  const args = [
    `--import=data:text/javascript,${encodeURIComponent(networkGuard)}`,
    cli,
    'lint',
    'openapi/trajgate.yaml',
    '--config=redocly.yaml',
    '--format=json',
  ];
  const run = promisify(execFile)(process.execPath, args, { cwd: root, env, timeout: 60_000, maxBuffer: 64 << 20 });
  // redocly exits 1 when it finds errors; the report on stdout is what counts.
  const { stdout, stderr } = await run.catch((err: { stdout?: string; stderr?: string; message: string }) => {
    if (typeof err.stdout !== 'string' || !err.stdout.trim()) throw err;
    return { stdout: err.stdout, stderr: err.stderr ?? '' };
  });
  let report: LintReport;
  try {
    report = JSON.parse(stdout) as LintReport;
  } catch {
    assert.fail(`redocly did not print a JSON report.\nstdout:\n${stdout}\nstderr:\n${stderr}`);
  }
  return { report, stderr };
}

function describeProblem(p: LintProblem): string {
  const at = p.location?.[0];
  const where = at ? `${at.start ? `${at.start.line}:${at.start.col} ` : ''}${at.pointer ?? ''}` : '';
  return `${p.severity} ${p.ruleId}: ${p.message} (${where})`;
}

describe('redocly lint openapi/trajgate.yaml', () => {
  it('reports no errors and no warnings, without touching the network', async () => {
    const { report, stderr } = await lint();
    const refused = stderr.split('\n').filter((line) => line.startsWith(NETWORK_MARK));
    assert.deepEqual(refused, [], 'the lint tried to reach the network');
    const problems = report.problems.map(describeProblem);
    assert.deepEqual(
      { errors: report.totals.errors, warnings: report.totals.warnings },
      { errors: 0, warnings: 0 },
      `redocly lint found problems:\n${problems.join('\n')}`,
    );
    assert.deepEqual(problems, []);
  });

  it('keeps the access-control rule on: every operation declares its security, the probes opt out', () => {
    const config = parse(readFileSync(new URL('../redocly.yaml', import.meta.url), 'utf8')) as {
      rules?: Record<string, unknown>;
    };
    assert.ok(!['off', 'warn'].includes(String(config.rules?.['security-defined'])), 'security-defined is on');
  });
});
