#!/usr/bin/env node
import { Command, CommanderError, Option } from 'commander';
import { stat } from 'node:fs/promises';
import cliProgress from 'cli-progress';
import { TrajgateClient, TrajgateConnectionError, TrajgateError } from '@trajgate/sdk';
import type { Progress, Role, UploadResult } from '@trajgate/sdk';
import { formatTable } from './table.js';

/**
 * The `trajgate` command. Exit codes: 0 success, 1 the server refused (the error's code is printed),
 * 2 bad usage, 3 the server could not be reached.
 */
const EXIT = { ok: 0, server: 1, usage: 2, connection: 3 } as const;

const program = new Command()
  .name('trajgate')
  .description('Checkpoint storage that keeps what the learning trajectory needs')
  .option('--url <url>', 'gateway URL (default: $TRAJGATE_URL or http://localhost:8080)')
  .option(
    '--token <token>',
    'bearer token for a gateway with access control on (default: $TRAJGATE_TOKEN, which ps does not show)',
  )
  .option('--json', 'print JSON for scripts instead of tables')
  .exitOverride();

/** The token given, by --token or $TRAJGATE_TOKEN; the SDK reads the variable itself when --token is absent. */
const tokenGiven = () => Boolean(program.opts<{ token?: string }>().token || process.env.TRAJGATE_TOKEN);
const client = () =>
  new TrajgateClient({
    url: program.opts<{ url?: string }>().url ?? process.env.TRAJGATE_URL ?? 'http://localhost:8080',
    token: program.opts<{ token?: string }>().token,
    retry: { retries: 2 },
  });
const json = () => program.opts<{ json?: boolean }>().json === true;
const print = (value: unknown, table: () => string) =>
  process.stdout.write(`${json() ? JSON.stringify(value, null, 2) : table()}\n`);
const step = (value: string) => {
  if (!/^\d+$/.test(value))
    throw new CommanderError(EXIT.usage, 'trajgate.usage', `step must be a non-negative integer, got '${value}'`);
  return Number(value);
};
const usage = (message: string) => new CommanderError(EXIT.usage, 'trajgate.usage', message);

function progressBar(label: string): { onProgress: Progress; stop(): void } {
  const bar = new cliProgress.SingleBar(
    {
      format: `${label} [{bar}] {percentage}% {value}/{total} bytes`,
      noTTYOutput: true,
      notTTYSchedule: 250,
      stream: process.stderr,
    },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  return {
    onProgress: (sent, total) => {
      if (!started) {
        bar.start(total ?? 0, 0);
        started = true;
      }
      if (total !== null) bar.setTotal(total);
      bar.update(sent);
    },
    stop: () => started && bar.stop(),
  };
}

program
  .command('serve')
  .description('run the gateway (configuration from the environment; see the README)')
  .option('--port <port>', 'listening port')
  .action(async (options: { port?: string }) => {
    if (options.port) process.env.PORT = options.port;
    await import('../main.js');
  });

const runs = program.command('runs').description('training runs');
runs.command('ls').action(async () => {
  const items = await client().listRuns();
  print(items, () =>
    formatTable(
      ['run', 'plannedSteps', 'trainSize', 'created'],
      items.map((r) => [r.id, r.plannedSteps, r.trainSize, r.createdAt]),
    ),
  );
});
runs.command('show <run>').action(async (run: string) => {
  const r = await client().getRun(run);
  print(r, () =>
    formatTable(
      ['field', 'value'],
      [
        ['run', r.id],
        ['plannedSteps', r.plannedSteps],
        ['trainSize', r.trainSize],
        ['policy', r.policy ? JSON.stringify(r.policy) : 'default'],
        ['checkpoints', `${r.checkpoints.kept} kept of ${r.checkpoints.count}`],
        ['latest step', r.checkpoints.latestStep],
        ['bytes kept / uploaded', `${r.checkpoints.bytesKept} / ${r.checkpoints.bytesUploaded}`],
      ],
    ),
  );
});

const checkpoints = program.command('checkpoints').description('checkpoints of a run');
checkpoints
  .command('ls <run>')
  .option('--status <status>', 'kept or discarded')
  .option('--tensors', "with each checkpoint's tensor table (shown with --json)")
  .action(async (run: string, options: { status?: 'kept' | 'discarded'; tensors?: boolean }) => {
    const items = await client().listCheckpoints(run, { status: options.status, tensors: options.tensors });
    print(items, () =>
      formatTable(
        ['step', 'status', 'classes', 'bytes', 'sha256', 'why'],
        items.map((c) => [c.step, c.status, c.classes.join(','), c.bytes, c.sha256.slice(0, 12), c.reasons[0] ?? '']),
      ),
    );
  });
checkpoints
  .command('upload <run> <step> <file>')
  .description('upload a checkpoint file, or a directory of shards (model-0000N-of-0000M.safetensors …) as one step')
  .option('--pin', 'pin it so retention never evicts it')
  .option('--concurrency <n>', 'files of a directory sent at once', '4')
  .action(async (run: string, s: string, file: string, options: { pin?: boolean; concurrency: string }) => {
    const bar = progressBar('upload');
    try {
      let result: UploadResult;
      if ((await stat(file)).isDirectory()) {
        const concurrency = Number(options.concurrency);
        if (!Number.isInteger(concurrency) || concurrency < 1) throw usage('--concurrency must be a positive integer');
        result = await client().uploadCheckpointDir(run, step(s), file, { concurrency, onProgress: bar.onProgress });
        if (options.pin && !result.pinned)
          result = { ...(await client().pin(run, step(s))), decision: result.decision };
      } else {
        result = await client().uploadCheckpoint(
          run,
          step(s),
          { file },
          { pin: options.pin, onProgress: bar.onProgress },
        );
      }
      bar.stop();
      const files = result.shards ? ` in ${result.shards.length} files` : '';
      print(
        result,
        () =>
          `step ${result.step}${files}: ${result.status} (${result.classes.join(', ') || 'no class'}), sha256 ${result.sha256}${result.decision?.discarded.length ? `; discarded ${result.decision.discarded.map((d) => d.step).join(', ')}` : ''}`,
      );
    } finally {
      bar.stop();
    }
  });
checkpoints
  .command('download <run> <step> <file>')
  .description('download a checkpoint to a file; a sharded step to a directory of its files and its index')
  .action(async (run: string, s: string, file: string) => {
    const bar = progressBar('download');
    try {
      const record = await client().downloadCheckpoint(run, step(s), file, { onProgress: bar.onProgress });
      bar.stop();
      const files = record.shards ? ` (${record.shards.length} files and model.safetensors.index.json)` : '';
      print(record, () => `${file}${files}: ${record.bytes} bytes, sha256 ${record.sha256} verified`);
    } finally {
      bar.stop();
    }
  });
for (const action of ['pin', 'unpin', 'restore'] as const) {
  checkpoints.command(`${action} <run> <step>`).action(async (run: string, s: string) => {
    const c = await client()[action](run, step(s));
    print(c, () => `step ${c.step}: ${c.status}${c.pinned ? ', pinned' : ''}`);
  });
}

const policy = program.command('policy').description('retention policies');
policy.command('ls').action(async () => {
  const items = await client().listPolicies();
  print(items, () =>
    formatTable(
      ['policy', 'built in', 'settings'],
      items.map((p) => [p.name, p.builtIn ? 'yes' : '', JSON.stringify(p.policy)]),
    ),
  );
});
policy.command('show <name>').action(async (name: string) => {
  const p = await client().getPolicy(name);
  print(p, () => JSON.stringify(p.resolved, null, 2));
});
policy
  .command('put <name> <json>')
  .description('store a named policy, e.g. \'{"budget": {"maxCheckpoints": 12}}\'')
  .action(async (name: string, text: string) => {
    const p = await client().putPolicy(name, parseJson(text));
    print(p, () => `policy ${p.name} stored`);
  });
policy
  .command('set <run>')
  .description('attach a policy to a run and apply it')
  .option('--name <name>', 'a stored policy')
  .option('--policy <json>', 'an inline policy')
  .action(async (run: string, options: { name?: string; policy?: string }) => {
    const result = await client().setRunPolicy(run, policyRef(options));
    print(
      result,
      () => `run ${run}: ${result.decision.totals.kept} of ${result.decision.totals.checkpoints} checkpoints kept`,
    );
  });
policy
  .command('simulate <run>')
  .option('--name <name>', 'a stored policy')
  .option('--policy <json>', 'an inline policy')
  .action(async (run: string, options: { name?: string; policy?: string }) => {
    const d = await client().simulateRetention(run, options.name || options.policy ? policyRef(options) : undefined);
    print(
      d,
      () =>
        formatTable(
          ['step', 'keep', 'classes', 'why'],
          d.checkpoints.map((c) => [c.step, c.keep ? 'keep' : '', c.classes.join(','), c.reasons[0] ?? '']),
        ) +
        `\n${d.totals.kept} kept, ${d.totals.bytesKept} of ${d.totals.bytesUploaded} bytes, mean coverage error ${(d.totals.coverage.mean * 100).toFixed(2)}% of path length`,
    );
  });

program.command('trajectory <run>').action(async (run: string) => {
  const t = await client().getTrajectory(run);
  print(t, () =>
    formatTable(
      ['step', 'phase', 'updateNorm', 'distanceFromStart', 'pathLength', 'cosinePrev', 'changeScore'],
      t.items.map((i) => [
        i.step,
        i.phase,
        fmt(i.updateNorm),
        fmt(i.distanceFromStart),
        fmt(i.pathLength),
        fmt(i.cosinePrev),
        i.changeScore.toFixed(2),
      ]),
    ),
  );
});

program.command('estimate <run>').action(async (run: string) => {
  const e = await client().getEstimate(run);
  print(e, () =>
    formatTable(
      ['field', 'value'],
      Object.entries(e).map(([k, v]) => [k, typeof v === 'object' ? JSON.stringify(v) : v]),
    ),
  );
});

const ROLES: readonly Role[] = ['reader', 'writer', 'operator', 'admin'];

const tokens = program.command('tokens').description('access tokens (admin only)');
tokens
  .command('create <name>')
  .description('create a token; its secret is printed once, on stdout (the rest goes to stderr)')
  .addOption(new Option('--role <role>', 'what it may do').choices(ROLES).makeOptionMandatory())
  .requiredOption('--runs <patterns>', "runs it may touch: ids or prefixes ending in *, comma-separated ('team-a-*,x')")
  .option('--expires <iso>', 'expiry, ISO-8601 with a time zone (default: never)')
  .action(async (name: string, options: { role: Role; runs: string; expires?: string }) => {
    const runs = options.runs
      .split(',')
      .map((r) => r.trim())
      .filter((r) => r !== '');
    if (runs.length === 0) throw usage('--runs needs at least one run id or prefix');
    const created = await client().createToken({ name, role: options.role, runs, expiresAt: options.expires });
    if (json()) {
      process.stdout.write(`${JSON.stringify(created, null, 2)}\n`);
      return;
    }
    process.stderr.write(
      `created ${created.id} '${created.name}': ${created.role} on ${created.runs.join(', ')}, ` +
        `expires ${created.expiresAt ?? 'never'}\n` +
        'the token follows; it is not shown again (store it now; if it is lost, revoke it and create another):\n',
    );
    process.stdout.write(`${created.token}\n`);
  });
tokens.command('ls').action(async () => {
  const items = await client().listTokens();
  print(items, () =>
    formatTable(
      ['id', 'name', 'role', 'runs', 'expires', 'revoked'],
      items.map((t) => [t.id, t.name, t.role, t.runs.join(','), t.expiresAt ?? 'never', t.revokedAt ?? '']),
    ),
  );
});
tokens.command('revoke <id>').action(async (id: string) => {
  const t = await client().revokeToken(id);
  print(t, () => `revoked ${t.id} '${t.name}' at ${t.revokedAt}`);
});

program
  .command('audit')
  .description('the audit trail, oldest first (admins: every entry; operators: their runs)')
  .option('--run <run>', 'entries about this run only')
  .option('--since <iso>', 'entries at or after this time (ISO-8601 with a time zone)')
  .option('--after <id>', 'entries after this id (the next page)')
  .option('--limit <n>', 'at most this many entries, 1 to 1000 (default 100)')
  .action(async (options: { run?: string; since?: string; after?: string; limit?: string }) => {
    const count = (value: string | undefined, flag: string, min: number, max: number) => {
      if (value === undefined) return undefined;
      if (!/^\d+$/.test(value) || Number(value) < min || Number(value) > max)
        throw usage(`${flag} must be a whole number from ${min} to ${max}, got '${value}'`);
      return Number(value);
    };
    const page = await client().listAudit({
      run: options.run,
      since: options.since,
      after: count(options.after, '--after', 0, Number.MAX_SAFE_INTEGER),
      limit: count(options.limit, '--limit', 1, 1000),
    });
    print(page, () =>
      formatTable(
        ['id', 'at', 'actor', 'action', 'run', 'step'],
        page.items.map((e) => [e.id, e.at, e.actor, e.action, e.run, e.step]),
      ),
    );
    if (page.next !== null && !json()) process.stderr.write(`more entries: --after ${page.next}\n`);
  });

function fmt(v: number | null): string {
  return v === null ? '-' : v.toPrecision(4);
}

function parseJson(text: string): Record<string, unknown> {
  try {
    return JSON.parse(text) as Record<string, unknown>;
  } catch (err) {
    throw new CommanderError(EXIT.usage, 'trajgate.usage', `not valid JSON: ${(err as Error).message}`);
  }
}

function policyRef(options: {
  name?: string;
  policy?: string;
}): { name: string } | { policy: Record<string, unknown> } {
  if (options.name) return { name: options.name };
  if (options.policy) return { policy: parseJson(options.policy) };
  throw new CommanderError(EXIT.usage, 'trajgate.usage', 'give --name or --policy');
}

const isServe = process.argv[2] === 'serve';
program.parseAsync(process.argv).then(
  // Pooled keep-alive connections would hold a one-shot command open; `serve` runs until signalled.
  () => isServe || process.exit(EXIT.ok),
  (err: unknown) => {
    if (err instanceof CommanderError) {
      // Commander prints its own; ours (a bad step, --limit) are printed here.
      if (err.code === 'trajgate.usage') process.stderr.write(`trajgate: ${err.message}\n`);
      process.exit(err.exitCode === 0 ? EXIT.ok : EXIT.usage);
    }
    if (err instanceof TrajgateConnectionError) {
      process.stderr.write(`trajgate: ${err.message}\n`);
      process.exit(EXIT.connection);
    }
    if (err instanceof TrajgateError) {
      const hint = err.code === 'unauthenticated' && !tokenGiven() ? ' (give --token or set $TRAJGATE_TOKEN)' : '';
      process.stderr.write(`trajgate: ${err.code}: ${err.message}${hint}\n`);
      process.exit(EXIT.server);
    }
    process.stderr.write(`trajgate: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(EXIT.usage);
  },
);
