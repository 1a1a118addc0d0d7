import type { Logger } from 'pino';
import type { Catalog } from '../catalog/catalog.js';
import type { Config } from '../config.js';
import type { RunEstimates } from '../estimate/run-estimates.js';
import type { CheckpointIngest } from '../ingest/ingest-checkpoint.js';
import type { RetentionDecision } from '../retention/engine.js';
import type { RetentionService } from '../retention/service.js';
import type { RunCoordinator } from '../runs/coordinator.js';
import type { BlobStore } from '../storage/blob-store.js';

/** Everything a route needs, built once by `main.ts` (or a test) and handed to `createApp`. */
export interface AppContext {
  config: Readonly<Config>;
  catalog: Catalog;
  blobs: BlobStore;
  ingest: CheckpointIngest<RetentionDecision>;
  retention: RetentionService;
  runs: RunCoordinator;
  estimates: RunEstimates;
  logger: Logger;
}
