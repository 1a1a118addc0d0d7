import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { PassThrough, type Readable } from 'node:stream';
import type { Logger } from 'pino';
import type { Catalog, UploadSessionRecord } from '../catalog/catalog.js';
import { AppError } from '../errors.js';
import type { Caller, UploadOutcome, UploadRequest } from './types.js';

/** How long a session lives after its creation or its latest PATCH (Upload-Expires). */
export const UPLOAD_SESSION_TTL_MS = 24 * 3600 * 1000;

export interface NewSession {
  run: string;
  step: number;
  length: number;
  contentType?: string;
  sha256?: string;
  pin: boolean;
}

export interface SessionState {
  id: string;
  length: number;
  offset: number;
  expiresAt: string;
}

export interface PatchResult extends SessionState {
  /** The committed checkpoint once the last byte arrived, else null. */
  outcome: UploadOutcome | null;
}

type Settled = { ok: UploadOutcome } | { err: unknown };

/**
 * The stream of one upload in this process: the body the checkpoint ingest consumes from the first PATCH to
 * the last, so validation, SHA-256 and analysis are exactly a one-request upload's.
 */
interface LiveUpload {
  stream: PassThrough;
  offset: number;
  outcome: Promise<Settled>;
  settled: Settled | null;
  /** The PATCH writing into the stream now, if any. */
  patch: { body: Readable; done: Promise<void> } | null;
}

/**
 * Resumable uploads (tus 1.0, docs/architecture.md §3). Sessions are catalog rows, so any replica answers
 * HEAD; the live stream is held by the process that received the first PATCH. A PATCH that reaches a
 * process without it (a restart, another replica, or a stream that timed out idle) cannot continue the
 * in-memory SHA-256 and analysis: the session's offset is reset to 0 and the PATCH answered 409 with
 * `Upload-Offset: 0`, so a tus client resumes from the start of the same session.
 */
export class ResumableUploads {
  private readonly live = new Map<string, LiveUpload>();

  constructor(
    private readonly catalog: Catalog,
    private readonly upload: (req: UploadRequest) => Promise<UploadOutcome>,
    private readonly logger: Logger,
    private readonly ttlMs = UPLOAD_SESSION_TTL_MS,
  ) {}

  async create(session: NewSession): Promise<SessionState> {
    const id = `${Date.now().toString(36)}${randomBytes(12).toString('hex')}`;
    const now = Date.now();
    const metadata: Record<string, string> = { pin: String(session.pin) };
    if (session.contentType !== undefined) metadata.contentType = session.contentType;
    if (session.sha256 !== undefined) metadata.sha256 = session.sha256;
    const expiresAt = new Date(now + this.ttlMs).toISOString();
    await this.catalog.createUploadSession({
      id,
      run: session.run,
      step: session.step,
      length: session.length,
      metadata,
      expiresAt,
      createdAt: new Date(now).toISOString(),
    });
    return { id, length: session.length, offset: 0, expiresAt };
  }

  /** HEAD: where to resume. The live offset where this process holds the stream, else the catalog's. */
  async state(run: string, step: number, id: string): Promise<SessionState> {
    const row = await this.row(run, step, id);
    const live = this.usable(id);
    return { id, length: row.length, offset: live ? live.offset : row.offset, expiresAt: row.expiresAt };
  }

  /** PATCH: appends `body` at `offset`. Resolves with the new offset, and the checkpoint after the last byte. */
  async append(
    run: string,
    step: number,
    id: string,
    offset: number,
    body: Readable,
    caller: Caller,
  ): Promise<PatchResult> {
    const row = await this.row(run, step, id);
    let live = this.live.get(id);
    if (live?.patch) {
      // The client gave up on that request (it is sending a new one): stop reading it.
      live.patch.body.destroy();
      await live.patch.done;
    }
    live = this.usable(id) ?? undefined;
    if (live?.settled && 'err' in live.settled) {
      await this.drop(id);
      throw live.settled.err;
    }
    if (!live) {
      if (offset !== 0 || row.offset !== 0) {
        await this.catalog.updateUploadSession(id, { offset: 0, expiresAt: this.expiry() });
        throw mismatch(
          offset,
          0,
          'this gateway process does not hold the upload stream (it restarted, or another replica does); resume from offset 0',
        );
      }
      live = this.start(row, caller);
    }
    if (offset !== live.offset) throw mismatch(offset, live.offset, 'resume from the offset HEAD reports');

    const current = live;
    let finishPatch = () => {};
    current.patch = { body, done: new Promise<void>((resolve) => (finishPatch = resolve)) };
    try {
      await this.pump(current, body, row.length);
    } finally {
      current.patch = null;
      finishPatch();
    }
    const expiresAt = this.expiry();
    if (current.settled && 'err' in current.settled) {
      await this.drop(id);
      throw current.settled.err;
    }
    if (current.offset < row.length) {
      await this.catalog.updateUploadSession(id, { offset: current.offset, expiresAt });
      return { id, length: row.length, offset: current.offset, expiresAt, outcome: null };
    }
    current.stream.end();
    const settled = await current.outcome;
    await this.drop(id);
    if ('err' in settled) throw settled.err;
    return { id, length: row.length, offset: current.offset, expiresAt, outcome: settled.ok };
  }

  /** DELETE: ends the session and discards what it received. */
  async terminate(run: string, step: number, id: string): Promise<void> {
    await this.row(run, step, id);
    await this.drop(id);
  }

  /** Abandons every live stream (shutdown): their staged bytes are aborted, the sessions restart from 0. */
  async close(): Promise<void> {
    const all = [...this.live.entries()];
    for (const [id, live] of all) {
      this.live.delete(id);
      live.stream.destroy(new AppError('request_timeout', 'the gateway shut down'));
    }
    await Promise.all(all.map(([, live]) => live.outcome));
  }

  private start(row: UploadSessionRecord, caller: Caller): LiveUpload {
    const stream = new PassThrough();
    const live: LiveUpload = {
      stream,
      offset: 0,
      settled: null,
      patch: null,
      outcome: Promise.resolve({ err: null }),
    };
    live.outcome = this.upload({
      caller,
      run: row.run,
      step: row.step,
      pin: row.metadata.pin === 'true',
      body: stream,
      contentType: row.metadata.contentType,
      contentLength: row.length,
      sha256: row.metadata.sha256,
    }).then(
      (ok) => (live.settled = { ok }),
      (err: unknown) => {
        live.settled = { err };
        stream.destroy();
        if (!live.patch && this.live.get(row.id) === live && !isClientFault(err)) {
          // Nobody to tell (e.g. the stream sat idle past TRAJGATE_UPLOAD_IDLE_S): the session restarts from 0.
          this.live.delete(row.id);
          this.catalog.updateUploadSession(row.id, { offset: 0, expiresAt: this.expiry() }).catch((e: unknown) => {
            this.logger.warn({ err: e, id: row.id }, 'could not reset an upload session');
          });
        }
        return live.settled;
      },
    );
    this.live.set(row.id, live);
    return live;
  }

  /** Copies the PATCH body into the live stream with back-pressure, up to `length`; a cut body just stops. */
  private async pump(live: LiveUpload, body: Readable, length: number): Promise<void> {
    const failed = live.outcome.then(() => 'failed' as const);
    try {
      for await (const chunk of body as AsyncIterable<Buffer>) {
        if (live.settled) return;
        if (live.offset + chunk.byteLength > length) {
          throw new AppError('body_too_large', `the PATCH bodies exceed Upload-Length ${length}`, { length });
        }
        live.offset += chunk.byteLength;
        if (!live.stream.write(chunk)) await Promise.race([once(live.stream, 'drain'), failed]);
      }
    } catch (err) {
      if (err instanceof AppError) throw err;
      // The connection dropped: the offset stays at the bytes that arrived.
      this.logger.debug({ err, offset: live.offset }, 'upload PATCH cut off');
    }
  }

  /** The live upload where it can still continue; a stream that failed for reasons outside the client's bytes is dropped. */
  private usable(id: string): LiveUpload | null {
    const live = this.live.get(id);
    if (!live) return null;
    if (live.settled && 'err' in live.settled && !isClientFault(live.settled.err)) {
      this.live.delete(id);
      return null;
    }
    return live;
  }

  private async row(run: string, step: number, id: string): Promise<UploadSessionRecord> {
    const row = await this.catalog.getUploadSession(id);
    if (!row || row.run !== run || row.step !== step) {
      throw new AppError('upload_not_found', `no upload ${id} for step ${step} of run '${run}'`, { run, step, id });
    }
    if (row.expiresAt < new Date().toISOString()) {
      await this.drop(id);
      throw new AppError('upload_expired', `upload ${id} expired at ${row.expiresAt}`, {
        id,
        expiresAt: row.expiresAt,
      });
    }
    return row;
  }

  private async drop(id: string): Promise<void> {
    const live = this.live.get(id);
    this.live.delete(id);
    if (live && !live.settled) {
      live.stream.destroy(new AppError('truncated_body', 'the upload was terminated'));
      await live.outcome;
    }
    await this.catalog.deleteUploadSession(id);
  }

  private expiry(): string {
    return new Date(Date.now() + this.ttlMs).toISOString();
  }
}

/** The bytes were at fault (4xx other than a timeout): the session cannot succeed by resending them. */
function isClientFault(err: unknown): boolean {
  return err instanceof AppError && err.status >= 400 && err.status < 500 && err.code !== 'request_timeout';
}

function mismatch(sent: number, offset: number, hint: string): AppError {
  return new AppError('upload_offset_mismatch', `Upload-Offset ${sent} is not the upload's offset ${offset}: ${hint}`, {
    uploadOffset: offset,
  });
}
