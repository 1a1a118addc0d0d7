import { AppError } from '../errors.js';

/**
 * Normalises a request body stream: reports a client that went away mid-body as truncated_body (the
 * connection error Node raises then is not the client's checksum or format problem), and enforces the
 * size cap as bytes arrive rather than trusting Content-Length.
 */
export async function* readBody(body: AsyncIterable<Uint8Array>, maxBytes: number): AsyncGenerator<Uint8Array> {
  let received = 0;
  try {
    for await (const chunk of body) {
      received += chunk.byteLength;
      if (received > maxBytes) {
        throw new AppError('body_too_large', `checkpoint body exceeds the limit of ${maxBytes} bytes`, {
          limit: maxBytes,
        });
      }
      yield chunk;
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
