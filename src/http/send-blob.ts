import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Request, Response } from 'express';
import type { ByteRange } from '../storage/blob-store.js';

/**
 * Answers a GET or HEAD for stored bytes of `size`: 206 with Content-Range for `range`, else the status
 * already set (200); Content-Length either way; the body streamed (HEAD: dropped unread). A client that
 * goes away mid-download is not a server error; any other stream failure is thrown.
 */
export async function sendBlob(
  req: Request,
  res: Response,
  body: Readable,
  size: number,
  range: ByteRange | null,
): Promise<void> {
  if (range) {
    res.status(206);
    res.setHeader('Content-Range', `bytes ${range.start}-${range.end}/${size}`);
    res.setHeader('Content-Length', String(range.end - range.start + 1));
  } else {
    res.setHeader('Content-Length', String(size));
  }
  if (req.method === 'HEAD') {
    body.destroy();
    res.end();
    return;
  }
  try {
    await pipeline(body, res);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ERR_STREAM_PREMATURE_CLOSE') return;
    throw err;
  }
}
