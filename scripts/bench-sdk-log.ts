/**
 * SDK metric logging from a tight loop: `RunLogger.log()` for --points points against a gateway on a real
 * socket, as a training loop calls it. Prints the loop's throughput, the log() latency (median, p99, max:
 * a call that completes a batch on a full queue waits for the batch in flight), and what the background
 * batches cost (the run's creation, the slowest batch). test/sdk.test.ts checks the behaviour (a log()
 * waits for one batch at most, and never when it does not fill one); this measures its speed.
 *
 *   npx tsx scripts/bench-sdk-log.ts [--points 100000] [--batch-size 2000] [--metric-capacity 4]
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { TrajgateClient, type MetricPoint } from '@trajgate/sdk';
import { loadConfig } from '../src/config.js';
import { startServer } from '../src/server.js';

const { values } = parseArgs({
  options: {
    points: { type: 'string', default: '100000' },
    'batch-size': { type: 'string', default: '2000' },
    'metric-capacity': { type: 'string', default: '4' },
  },
});
const total = Number(values.points);
const batchSize = Number(values['batch-size']);
const metricCapacity = Number(values['metric-capacity']);

async function main(): Promise<void> {
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'trajgate-bench-sdk-log-'));
  const server = await startServer(
    loadConfig({ TRAJGATE_DATA_DIR: dataDir, PORT: '0', HOST: '127.0.0.1' }),
    pino({ level: 'warn' }),
  );
  try {
    const client = new TrajgateClient({ url: server.url });
    const send = client.logMetrics.bind(client);
    let slowestBatch = 0;
    client.logMetrics = async (
      run: string,
      points: readonly MetricPoint[],
      options?: { format?: 'msgpack' | 'json' },
    ) => {
      const t = performance.now();
      const accepted = await send(run, points, options);
      slowestBatch = Math.max(slowestBatch, performance.now() - t);
      return accepted;
    };
    const create = client.putRun.bind(client);
    let runCreation = 0;
    client.putRun = async (id, input) => {
      const t = performance.now();
      const result = await create(id, input);
      runCreation = performance.now() - t;
      return result;
    };

    const run = client.run('bench', { trainSize: 1000, batchSize, metricCapacity });
    const latencies = new Float64Array(total);
    const started = performance.now();
    for (let step = 1; step <= total; step++) {
      const t = performance.now();
      await run.log({ step, trainLoss: 1 / step, lr: 0.1 });
      latencies[step - 1] = performance.now() - t;
    }
    const loopMs = performance.now() - started;
    await run.close();
    const closedMs = performance.now() - started;

    latencies.sort();
    const pct = (p: number) => latencies[Math.min(total - 1, Math.ceil(p * total) - 1)];
    const ms = (v: number) => (v < 1 ? `${(v * 1000).toFixed(1)} µs` : `${v.toFixed(1)} ms`);
    console.log(
      `bench-sdk-log: ${total} points, batches of ${batchSize}, metric capacity ${metricCapacity} ` +
        `(${process.version}, ${process.arch})`,
    );
    console.log(
      `loop ${loopMs.toFixed(0)} ms (${((total / loopMs) * 1000).toFixed(0)} points/s), ` +
        `all sent after ${closedMs.toFixed(0)} ms`,
    );
    console.log(`log() median ${ms(pct(0.5))}, p99 ${ms(pct(0.99))}, max ${ms(latencies[total - 1])}`);
    console.log(`run creation ${ms(runCreation)}, slowest batch ${ms(slowestBatch)}`);
  } finally {
    await server.close();
    await rm(dataDir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
