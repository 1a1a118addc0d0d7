/**
 * A gateway as a child process (`node --import tsx src/main.ts`, or `node dist/main.js`), for tests and benchmarks that need
 * several gateways at once or one they can kill: replicas over one catalog and one bucket, side-by-side
 * ingest. The child gets only the TRAJGATE_ variables given (none inherited), PORT=0 on 127.0.0.1, and
 * its URL is read from the "trajgate listening" log line.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { appendFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const START_TIMEOUT_MS = 60_000;

export interface GatewayProcess {
  url: string;
  child: ChildProcess;
  /** Resolves with the exit code (null when killed by a signal). */
  exited: Promise<number | null>;
  /** The last lines it wrote, for failure messages. */
  tail(): string;
  /** Log lines at level error or above. */
  errors: string[];
  /** SIGKILL, as a crash would: no shutdown of any kind. */
  kill(): Promise<void>;
  /** SIGTERM (graceful shutdown), then SIGKILL after `timeoutMs`. */
  stop(timeoutMs?: number): Promise<void>;
}

/**
 * Reads a gateway child's pino lines as they come: resolves `listening` with the URL of its "trajgate
 * listening" line, collects lines at level error or above, keeps the last lines for failure messages, and
 * appends stdout to `logFile` when given.
 */
export function watchGatewayOutput(
  child: ChildProcess,
  options: { logFile?: string } = {},
): { listening: Promise<string>; errors: string[]; tail(): string } {
  const lines: string[] = [];
  const errors: string[] = [];
  let partial = '';
  let stderr = '';
  let onUrl: (url: string) => void = () => undefined;
  const listening = new Promise<string>((resolve) => {
    onUrl = resolve;
  });
  child.stdout!.on('data', (d: Buffer) => {
    const parts = (partial + d.toString('utf8')).split('\n');
    partial = parts.pop() ?? '';
    if (options.logFile && parts.length > 0) appendFileSync(options.logFile, `${parts.join('\n')}\n`);
    for (const line of parts) {
      lines.push(line);
      if (lines.length > 40) lines.shift();
      const url = /"url":"(http:[^"]+)"/.exec(line)?.[1];
      if (url) onUrl(url);
      const level = /"level":(\d+)/.exec(line)?.[1];
      if (level && Number(level) >= 50) errors.push(line.slice(0, 1500));
    }
  });
  child.stderr!.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString('utf8')).slice(-4000);
  });
  return { listening, errors, tail: () => `stdout:\n${lines.join('\n')}\nstderr:\n${stderr}` };
}

export interface GatewayProcessOptions {
  /** Go to node before the script (e.g. `--cpu-prof`, which NODE_OPTIONS does not take). */
  nodeArgs?: string[];
  /** Run the compiled gateway, `node dist/main.js` as the Dockerfile does (`npm run build` first), not the sources under tsx. */
  compiled?: boolean;
}

export async function startGatewayProcess(
  env: Record<string, string>,
  { nodeArgs = [], compiled = false }: GatewayProcessOptions = {},
): Promise<GatewayProcess> {
  const inherited = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !k.startsWith('TRAJGATE_') && !k.startsWith('NODE_TEST')),
  );
  const entry = compiled ? [path.join(ROOT, 'dist/main.js')] : ['--import', 'tsx', path.join(ROOT, 'src/main.ts')];
  const child = spawn(process.execPath, [...nodeArgs, ...entry], {
    cwd: ROOT,
    env: {
      ...inherited,
      PORT: '0',
      HOST: '127.0.0.1',
      TRAJGATE_AUTH: 'none',
      TRAJGATE_RATE_LIMIT_RPS: '0',
      TRAJGATE_LOG_LEVEL: 'info',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const { listening, errors, tail } = watchGatewayOutput(child);
  const exited = once(child, 'exit').then(([code]) => code as number | null);
  const running = () => child.exitCode === null && child.signalCode === null;
  const kill = async () => {
    if (running()) child.kill('SIGKILL');
    await exited;
  };
  const failed = exited.then((code) => {
    throw new Error(`the gateway exited (${code ?? child.signalCode}) before listening\n${tail()}`);
  });
  const timer = sleep(START_TIMEOUT_MS, undefined, { ref: false }).then(() => {
    throw new Error(`the gateway did not listen within ${START_TIMEOUT_MS} ms\n${tail()}`);
  });
  failed.catch(() => undefined);
  timer.catch(() => undefined);
  let url: string;
  try {
    url = await Promise.race([listening, failed, timer]);
  } catch (err) {
    await kill();
    throw err;
  }
  return {
    url,
    child,
    exited,
    tail,
    errors,
    kill,
    async stop(timeoutMs = 10_000) {
      if (!running()) return;
      child.kill('SIGTERM');
      const cut = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      await exited;
      clearTimeout(cut);
    },
  };
}
