import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/**
 * What the gateway reports at GET /metrics (Prometheus text format): one registry per gateway, so tests and
 * several gateways in one process never share counters. Modules call these methods; none of them touches
 * prom-client directly.
 */
export class Telemetry {
  readonly registry = new Registry();
  private readonly uploads: Counter<'format' | 'outcome'>;
  private readonly uploadBytes: Histogram<'format'>;
  private readonly uploadSeconds: Histogram<'format'>;
  private readonly downloads: Counter<'range'>;
  private readonly downloadBytes: Counter;
  private readonly storedBytes: Counter;
  private readonly deletedBytes: Counter;
  private readonly decisions: Counter;
  private readonly decisionSeconds: Histogram;
  private readonly evictions: Counter;
  private readonly errors: Counter<'code' | 'status'>;
  private readonly collectorRuns: Counter<'outcome'>;
  private readonly collectorDeleted: Counter;
  private readonly reconciliations: Counter;
  private readonly reconcileRemoved: Counter<'kind'>;
  private readonly estimateFolds: Counter<'source'>;
  private readonly inFlightUploads: Gauge;

  constructor() {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: 'trajgate_' });
    this.uploads = new Counter({
      name: 'trajgate_uploads_total',
      help: 'Checkpoint uploads by format and outcome (created, unchanged, or the error code)',
      labelNames: ['format', 'outcome'],
      registers,
    });
    this.uploadBytes = new Histogram({
      name: 'trajgate_upload_bytes',
      help: 'Size of stored checkpoints',
      labelNames: ['format'],
      buckets: [1e6, 1e7, 1e8, 1e9, 1e10, 1e11],
      registers,
    });
    this.uploadSeconds = new Histogram({
      name: 'trajgate_upload_duration_seconds',
      help: 'Time from the first byte to the answer of a stored checkpoint',
      labelNames: ['format'],
      buckets: [0.1, 0.5, 1, 5, 15, 60, 300, 1800],
      registers,
    });
    this.inFlightUploads = new Gauge({ name: 'trajgate_uploads_in_flight', help: 'Uploads in progress', registers });
    this.downloads = new Counter({
      name: 'trajgate_downloads_total',
      help: 'Checkpoint downloads started, whole or by range',
      labelNames: ['range'],
      registers,
    });
    this.downloadBytes = new Counter({
      name: 'trajgate_download_bytes_total',
      help: 'Bytes of checkpoints served',
      registers,
    });
    this.storedBytes = new Counter({
      name: 'trajgate_stored_bytes_total',
      help: 'Bytes of checkpoints committed to the blob store',
      registers,
    });
    this.deletedBytes = new Counter({
      name: 'trajgate_deleted_bytes_total',
      help: 'Bytes of discarded checkpoints deleted by the collector',
      registers,
    });
    this.decisions = new Counter({
      name: 'trajgate_retention_decisions_total',
      help: 'Retention decisions',
      registers,
    });
    this.decisionSeconds = new Histogram({
      name: 'trajgate_retention_decision_seconds',
      help: 'Time to load, decide and record a retention decision',
      buckets: [0.001, 0.005, 0.02, 0.05, 0.2, 1, 5],
      registers,
    });
    this.evictions = new Counter({
      name: 'trajgate_retention_discards_total',
      help: 'Checkpoints a retention decision moved from kept to discarded',
      registers,
    });
    this.errors = new Counter({
      name: 'trajgate_errors_total',
      help: 'Error answers by catalogue code and HTTP status',
      labelNames: ['code', 'status'],
      registers,
    });
    this.collectorRuns = new Counter({
      name: 'trajgate_collector_runs_total',
      help: 'Collector passes by outcome (ok, failed)',
      labelNames: ['outcome'],
      registers,
    });
    this.collectorDeleted = new Counter({
      name: 'trajgate_collector_deleted_checkpoints_total',
      help: 'Discarded checkpoints whose bytes the collector deleted',
      registers,
    });
    this.reconciliations = new Counter({
      name: 'trajgate_reconciliations_total',
      help: 'Reconciliation passes of storage against the catalog',
      registers,
    });
    this.reconcileRemoved = new Counter({
      name: 'trajgate_reconcile_removed_total',
      help: 'What reconciliation removed: orphaned blobs and stale staged writes',
      labelNames: ['kind'],
      registers,
    });
    this.estimateFolds = new Counter({
      name: 'trajgate_estimate_folds_total',
      help: 'Inputs folded into generalization estimates (metric points, checkpoints)',
      labelNames: ['source'],
      registers,
    });
  }

  uploadStarted(): () => void {
    this.inFlightUploads.inc();
    return () => this.inFlightUploads.dec();
  }

  uploadFinished(format: string, outcome: string, bytes: number, seconds: number): void {
    this.uploads.inc({ format, outcome });
    if (outcome !== 'created') return;
    this.uploadBytes.observe({ format }, bytes);
    this.uploadSeconds.observe({ format }, seconds);
    this.storedBytes.inc(bytes);
  }

  download(ranged: boolean, bytes: number): void {
    this.downloads.inc({ range: ranged ? 'yes' : 'no' });
    this.downloadBytes.inc(bytes);
  }

  decision(seconds: number, evicted: number): void {
    this.decisions.inc();
    this.decisionSeconds.observe(seconds);
    this.evictions.inc(evicted);
  }

  error(code: string, status: number): void {
    this.errors.inc({ code, status: String(status) });
  }

  collectorPass(ok: boolean, deleted: number, bytes: number): void {
    this.collectorRuns.inc({ outcome: ok ? 'ok' : 'failed' });
    this.collectorDeleted.inc(deleted);
    this.deletedBytes.inc(bytes);
  }

  reconciled(orphans: number, staged: number): void {
    this.reconciliations.inc();
    this.reconcileRemoved.inc({ kind: 'orphan' }, orphans);
    this.reconcileRemoved.inc({ kind: 'staged' }, staged);
  }

  folded(source: 'metric_points' | 'checkpoints', n: number): void {
    this.estimateFolds.inc({ source }, n);
  }

  /** The exposition text and its content type. */
  async scrape(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
