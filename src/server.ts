import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { openCatalog } from './catalog/factory.js';
import type { Config } from './config.js';
import { createApp } from './http/app.js';
import type { AppContext } from './http/context.js';
import { AnalysisWorkers } from './ingest/analysis-worker.js';
import { CheckpointIngest } from './ingest/ingest-checkpoint.js';
import { DEFAULT_PIPELINE } from './ingest/ingest-pipeline.js';
import { ShardIngest } from './runs/shard-ingest.js';
import { startCollector } from './retention/collector.js';
import { staleAge } from './retention/reconcile.js';
import { RetentionService } from './retention/service.js';
import { RunEstimates } from './estimate/run-estimates.js';
import { AuditTrail } from './auth/audit-trail.js';
import { TokenService } from './auth/tokens.js';
import { Telemetry } from './observability/telemetry.js';
import { PolicyBook } from './runs/policy-book.js';
import { ResumableUploads } from './runs/resumable-uploads.js';
import { RunService } from './runs/run-service.js';
import { TrajectoryRecorder } from './runs/trajectory-recorder.js';
import type { Catalog } from './catalog/catalog.js';
import type { BlobStore } from './storage/blob-store.js';
import { createBlobStore } from './storage/factory.js';

export interface RunningServer {
  url: string;
  context: GatewayContext;
  /**
   * Stops accepting connections and reports not-ready at once, lets in-flight requests finish for up to
   * `graceMs` (default 0: cut them now), cuts the rest (their uploads abort cleanly and leave nothing), waits
   * for those aborts, then closes the stores.
   */
  close(graceMs?: number): Promise<void>;
}

/** The most an aborted upload may take to clean up after the grace period before the stores close anyway. */
const ABORT_SETTLE_MS = 10_000;

/** Opens the stores named by `config`, builds the app and listens. Used by `main.ts`, the CLI and tests. */
export async function startServer(config: Readonly<Config>, logger: Logger): Promise<RunningServer> {
  const context = await openContext(config, logger);
  if (config.auth.mode === 'tokens' && !(await context.tokens.anyUsable())) {
    await closeContext(context);
    throw new Error(
      'TRAJGATE_AUTH=tokens but no token can sign in: set TRAJGATE_ADMIN_TOKEN (at least 32 characters) ' +
        'to create the first tokens with POST /v1/tokens',
    );
  }
  const collector = startCollector(context.catalog, context.blobs, logger, {
    intervalMs: config.collectIntervalMs,
    staleMs: staleAge(config.limits.uploadIdleMs),
    telemetry: context.telemetry,
  });

  const shutdown = { started: false };
  const readiness = context.readiness;
  context.readiness = async () => ({ ...(await readiness()), shutdown: shutdown.started ? 'shutting down' : 'ok' });
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
    async close(graceMs = 0) {
      shutdown.started = true;
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      const cut = setTimeout(() => {
        logger.warn('grace period over: cutting the requests still in flight');
        server.closeAllConnections();
      }, graceMs);
      await closed;
      clearTimeout(cut);
      await context.uploads.close();
      await context.runs.drained(ABORT_SETTLE_MS);
      await collector.stop();
      await closeContext(context);
    },
  };
}

/** The stores named by `config` and the services over them; closed by `closeContext`. */
export interface GatewayContext extends AppContext {
  catalog: Catalog;
  blobs: BlobStore;
}

export async function openContext(config: Readonly<Config>, logger: Logger): Promise<GatewayContext> {
  const blobs = await createBlobStore({ blobUrl: config.blobUrl, s3: config.s3 });
  const catalog = await openCatalog(config.catalogUrl);
  const policies = new PolicyBook(catalog);
  const telemetry = new Telemetry();
  // Analysis workers for large uploads, shared by single-file and sharded uploads; started when first needed.
  const pipeline = { ...DEFAULT_PIPELINE, workers: new AnalysisWorkers(config.analysisThreads) };
  const runs = new RunService({
    telemetry,
    maxRunsPerScope: config.auth.maxRunsPerScope,
    catalog,
    blobs,
    ingest: new CheckpointIngest(blobs, catalog, config.limits, logger, pipeline),
    shards: new ShardIngest(blobs, catalog, config.limits, logger, pipeline),
    trajectory: new TrajectoryRecorder(catalog),
    retention: new RetentionService(catalog),
    estimates: new RunEstimates(catalog),
    policies,
  });
  const readiness = async () => {
    const [catalogState, storage] = await Promise.all([check(() => catalog.ping()), check(() => blobs.ping())]);
    return { catalog: catalogState, storage };
  };
  const tokens = new TokenService(catalog, config.auth.adminToken);
  return {
    config,
    logger,
    catalog,
    blobs,
    runs,
    uploads: new ResumableUploads(catalog, (req) => runs.upload(req), logger),
    policies,
    tokens,
    audit: new AuditTrail(catalog),
    telemetry,
    readiness,
  };
}

export async function closeContext(context: GatewayContext): Promise<void> {
  await context.catalog.close();
  await context.blobs.close();
}

async function check(probe: () => Promise<void>): Promise<string> {
  try {
    await probe();
    return 'ok';
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  }
}

function redact(url: string): string {
  return url.replace(/\/\/([^:@/]+):[^@/]+@/, '//$1:***@');
}
