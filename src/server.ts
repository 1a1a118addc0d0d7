import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { openCatalog } from './catalog/factory.js';
import type { Config } from './config.js';
import { createApp } from './http/app.js';
import type { AppContext } from './http/context.js';
import { CheckpointIngest } from './ingest/ingest-checkpoint.js';
import { TrajectoryRecorder } from './ingest/trajectory-recorder.js';
import { startCollector } from './retention/collector.js';
import { RetentionService } from './retention/service.js';
import { RunEstimates } from './estimate/run-estimates.js';
import { RunCoordinator } from './runs/coordinator.js';
import { createBlobStore } from './storage/factory.js';

/** Leftover staged writes older than this are removed at start-up (another replica may still be writing newer ones). */
const STAGING_MAX_AGE_MS = 60 * 60 * 1000;

export interface RunningServer {
  url: string;
  context: AppContext;
  close(): Promise<void>;
}

/** Opens the stores named by `config`, builds the app and listens. Used by `main.ts`, the CLI and tests. */
export async function startServer(config: Readonly<Config>, logger: Logger): Promise<RunningServer> {
  const context = await openContext(config, logger);
  const collected = await context.blobs.collectStaging(STAGING_MAX_AGE_MS);
  if (collected > 0) logger.info({ collected }, 'removed leftover staged writes');

  const collector = startCollector(context.catalog, context.blobs, logger, config.collectIntervalMs);

  const server = http.createServer(createApp(context));
  // Checkpoints take minutes to stream; only the headers are on a clock.
  server.requestTimeout = 0;
  server.headersTimeout = 60_000;
  server.keepAliveTimeout = 65_000;
  server.listen(config.port, config.host);
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  const host = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host;
  const url = `http://${host}:${port}`;
  logger.info({ url, blobs: context.blobs.description, catalog: redact(config.catalogUrl) }, 'trajgate listening');

  return {
    url,
    context,
    async close() {
      server.closeIdleConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await collector.stop();
      await closeContext(context);
    },
  };
}

export async function openContext(config: Readonly<Config>, logger: Logger): Promise<AppContext> {
  const blobs = createBlobStore({ blobUrl: config.blobUrl, s3: config.s3 });
  const catalog = await openCatalog(config.catalogUrl);
  const retention = new RetentionService(catalog);
  const estimates = new RunEstimates(catalog);
  const runs = new RunCoordinator(catalog, new TrajectoryRecorder(catalog), retention, estimates);
  const ingest = new CheckpointIngest(
    blobs,
    catalog,
    { limits: config.limits, onCommitted: (run, step, request) => runs.onCommitted(run, step, { pin: request.pin }) },
    logger,
  );
  return { config, logger, blobs, catalog, ingest, retention, runs, estimates };
}

export async function closeContext(context: AppContext): Promise<void> {
  await context.catalog.close();
  await context.blobs.close();
}

function redact(url: string): string {
  return url.replace(/\/\/([^:@/]+):[^@/]+@/, '//$1:***@');
}
