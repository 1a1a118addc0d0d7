import type { Logger } from 'pino';
import type { AuditTrail } from '../auth/audit-trail.js';
import type { TokenService } from '../auth/tokens.js';
import type { Telemetry } from '../observability/telemetry.js';
import type { Config } from '../config.js';
import type { PolicyBook } from '../runs/policy-book.js';
import type { ResumableUploads } from '../runs/resumable-uploads.js';
import type { RunService } from '../runs/run-service.js';

/** Each dependency's state for /readyz: 'ok' or what went wrong. */
export interface Readiness {
  catalog: string;
  storage: string;
  /** `shutting down` once the process was asked to stop. */
  shutdown?: string;
}

/**
 * What routes may reach, built once by `server.ts` (or a test) and handed to `createApp`: run state only
 * through the RunService, named policies through the PolicyBook, tokens and the audit trail through theirs
 * (docs/architecture.md §2).
 */
export interface AppContext {
  config: Readonly<Config>;
  logger: Logger;
  runs: RunService;
  /** Resumable (tus) upload sessions; their bytes go through `runs.upload`. */
  uploads: ResumableUploads;
  policies: PolicyBook;
  tokens: TokenService;
  audit: AuditTrail;
  telemetry: Telemetry;
  readiness(): Promise<Readiness>;
}
