import { AppError } from '../errors.js';

/**
 * Normalises a request body stream: reports a client that went away mid-body as truncated_body (the
 * connection error Node raises then is not the client's checksum or format problem), enforces the size
 * cap as bytes arrive rather than trusting Content-Length, and, with `idleMs`, gives up with
 * request_timeout when the client sends nothing for that long. Only time spent waiting for the client
 * counts: a slow write downstream never looks like an idle client.
 */
export async function* readBody(
  body: AsyncIterable<Uint8Array>,
  maxBytes: number,
  idleMs = 0,
): AsyncGenerator<Uint8Array> {
  const iterator = body[Symbol.asyncIterator]();
  const idle = idleMs > 0 ? new IdleTimer(idleMs) : null;
  let received = 0;
  try {
    for (;;) {
      const next = idle ? await idle.wait(iterator.next(), received) : await iterator.next();
      if (next.done) return;
      received += next.value.byteLength;
      if (received > maxBytes) {
        throw new AppError('body_too_large', `checkpoint body exceeds the limit of ${maxBytes} bytes`, {
          limit: maxBytes,
        });
      }
      yield next.value;
    }
  } catch (err) {
    if (err instanceof AppError) throw err;
    throw new AppError(
      'truncated_body',
      `the request body was cut off after ${received} bytes`,
      { received },
      {
        cause: err,
      },
    );
  } finally {
    idle?.stop();
  }
}

/** One timer for the whole body, re-armed for each wait: no timer per chunk. */
class IdleTimer {
  private readonly timer: NodeJS.Timeout;
  private waiting: ((err: AppError) => void) | null = null;
  private received = 0;

  constructor(private readonly idleMs: number) {
    this.timer = setTimeout(() => this.expire(), idleMs);
    this.timer.unref();
  }

  wait<T>(next: Promise<T>, received: number): Promise<T> {
    this.received = received;
    this.timer.refresh();
    return new Promise<T>((resolve, reject) => {
      this.waiting = reject;
      next.then(
        (value) => {
          this.waiting = null;
          resolve(value);
        },
        (err: unknown) => {
          this.waiting = null;
          reject(err);
        },
      );
    });
  }

  stop(): void {
    clearTimeout(this.timer);
  }

  private expire(): void {
    const reject = this.waiting;
    if (!reject) return; // not waiting for the client: the next wait re-arms the timer
    this.waiting = null;
    reject(
      new AppError(
        'request_timeout',
        `no bytes arrived for ${this.idleMs / 1000} s after ${this.received} bytes (TRAJGATE_UPLOAD_IDLE_S); the upload was abandoned`,
        { received: this.received, idleSeconds: this.idleMs / 1000 },
      ),
    );
  }
}

/** Reads the first `n` bytes (fewer if the body is shorter) and returns them with the rest of the stream. */
export async function peek(
  body: AsyncIterable<Uint8Array>,
  n: number,
): Promise<{ head: Uint8Array; rest: AsyncIterable<Uint8Array> }> {
  const iterator = body[Symbol.asyncIterator]();
  const pieces: Uint8Array[] = [];
  let have = 0;
  while (have < n) {
    const next = await iterator.next();
    if (next.done) break;
    pieces.push(next.value);
    have += next.value.byteLength;
  }
  const head = pieces.length === 1 ? pieces[0] : Buffer.concat(pieces);
  async function* rest(): AsyncGenerator<Uint8Array> {
    if (head.byteLength > 0) yield head;
    for (;;) {
      const next = await iterator.next();
      if (next.done) return;
      yield next.value;
    }
  }
  return { head, rest: rest() };
}
