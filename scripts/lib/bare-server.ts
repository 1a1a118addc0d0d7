/**
 * The baselines bench-ingest measures the gateway against, each run as a child process of its own so it never
 * shares an event loop with the benchmark's client:
 *
 *   node --import tsx scripts/lib/bare-server.ts bare <dir>
 *     A bare Node HTTP server. `PUT /<name>` streams the body to `<dir>/<name>`, fsyncs it and answers 201;
 *     `GET /<name>` streams the file back, with a single `Range: bytes=a-b` honoured (206). Nothing else:
 *     no parsing, no hashing, no catalog — the floor any gateway on this disk pays.
 *   node --import tsx scripts/lib/bare-server.ts s3rver <dir> <bucket>
 *     s3rver (the S3-compatible server the tests use) on 127.0.0.1 with one bucket, data under `<dir>`.
 *
 * Either prints one line `listening http://127.0.0.1:<port>` when ready.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';

async function bare(dir: string): Promise<void> {
  const server = http.createServer((req, res) => {
    const name = path.basename(decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname));
    const file = path.join(dir, name);
    const fail = (err: unknown) => {
      if (!res.headersSent) res.writeHead(500).end(String(err));
      else res.destroy();
    };
    if (req.method === 'PUT') {
      pipeline(req, createWriteStream(file))
        .then(async () => {
          const handle = await open(file, 'r+');
          try {
            await handle.sync();
          } finally {
            await handle.close();
          }
          res.writeHead(201, { 'content-type': 'application/json' }).end('{"stored":true}');
        })
        .catch(fail);
      return;
    }
    if (req.method === 'GET') {
      stat(file)
        .then(async (info) => {
          const match = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '');
          if (match) {
            const start = Number(match[1]);
            const end = Math.min(Number(match[2]), info.size - 1);
            res.writeHead(206, {
              'content-length': end - start + 1,
              'content-range': `bytes ${start}-${end}/${info.size}`,
            });
            await pipeline(createReadStream(file, { start, end }), res);
          } else {
            res.writeHead(200, { 'content-length': info.size });
            await pipeline(createReadStream(file), res);
          }
        })
        .catch(fail);
      return;
    }
    res.writeHead(405).end();
  });
  server.listen(0, '127.0.0.1', () => {
    console.log(`listening http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  });
}

async function s3rver(dir: string, bucket: string): Promise<void> {
  const { default: S3rver } = await import('s3rver');
  const server = new S3rver({
    address: '127.0.0.1',
    port: 0,
    silent: true,
    directory: dir,
    configureBuckets: [{ name: bucket }],
  });
  const { port } = await server.run();
  console.log(`listening http://127.0.0.1:${port}`);
}

const [mode, dir, bucket] = process.argv.slice(2);
if (mode === 'bare' && dir) await bare(dir);
else if (mode === 's3rver' && dir && bucket) await s3rver(dir, bucket);
else throw new Error('usage: bare-server.ts bare <dir> | s3rver <dir> <bucket>');
