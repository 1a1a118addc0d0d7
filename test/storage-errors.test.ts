import assert from 'node:assert/strict';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import express from 'express';
import { pino } from 'pino';
import request from 'supertest';
import { encodeSafetensors, type TensorData } from '@trajgate/sdk/wire/safetensors';
import { loadConfig } from '../src/config.js';
import { errors, isAppError } from '../src/errors.js';
import { createApp } from '../src/http/app.js';
import { errorHandler } from '../src/http/error-handler.js';
import { loggableUrl, requestLog } from '../src/http/request-log.js';
import { closeContext, openContext, type GatewayContext } from '../src/server.js';
import { checkpointDataKey, describeKey, describePrefix, manifestKeyFor } from '../src/storage/keys.js';
import { LocalBlobStore } from '../src/storage/local-blob-store.js';
import { S3BlobStore } from '../src/storage/s3-blob-store.js';
import { testEnv } from './helpers/gateway.js';
import { S3RVER_CREDENTIALS, startS3rver, type RunningS3rver } from './helpers/s3rver.js';

/**
 * Issue 10 item 5: storage errors name what failed in the API's terms (run, step, operation) and never echo
 * a server path, bucket, endpoint, credential or the raw OS / SDK message; that detail is in the server log.
 */

const SAFETENSORS = 'application/vnd.safetensors';
/** An absolute path as it would appear in an OS error message (`mkdir '/tmp/…'`, `open /data/…`). */
const ROOTED_PATH = /(^|[\s'"(=:,[])\/[\w.-]+\//;

interface LogRecord {
  level: number;
  msg: string;
  [field: string]: unknown;
}

/** A pino logger writing into memory; `text()` is everything logged, `records()` the parsed lines. */
function memoryLogger() {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      lines.push(...chunk.toString().split('\n').filter(Boolean));
      callback();
    },
  });
  return {
    logger: pino({ level: 'info' }, stream),
    text: () => lines.join('\n'),
    records: () => lines.map((line) => JSON.parse(line) as LogRecord),
  };
}

/** A gateway (createApp over openContext, as createTestGateway builds it) whose log is kept in memory. */
async function loggedGateway(extra: Record<string, string> = {}) {
  const { env, dataDir } = await testEnv(extra);
  const log = memoryLogger();
  const context: GatewayContext = await openContext(loadConfig(env), log.logger);
  return {
    app: createApp(context),
    context,
    dataDir,
    log,
    async close() {
      await closeContext(context);
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

function f32(values: number[]): Uint8Array {
  return new Uint8Array(new Float32Array(values).buffer);
}

const MODEL: TensorData[] = [{ name: 'layer.weight', dtype: 'F32', shape: [2, 2], data: f32([1, 2, 3, 4]) }];
const BODY = Buffer.from(encodeSafetensors(MODEL));

/** The response body leaks nothing of the server: no path under `secrets`, no rooted path, no OS error code. */
function assertNothingLeaks(body: unknown, secrets: string[]): void {
  const text = JSON.stringify(body);
  for (const secret of secrets) assert.ok(!text.includes(secret), `response contains '${secret}': ${text}`);
  assert.doesNotMatch(text, ROOTED_PATH, `response contains a rooted path: ${text}`);
  assert.doesNotMatch(text, /\bE[A-Z]{3,}\b/, `response contains an OS error code: ${text}`);
}

/** The error line of a 5xx (level 50) from the log. */
function errorRecord(records: LogRecord[]): LogRecord {
  const found = records.find((r) => r.level === 50);
  assert.ok(found, `no error line in the log: ${JSON.stringify(records)}`);
  return found;
}

describe('describeKey / describePrefix', () => {
  it('names keys by run and step, and never echoes keys outside the layout', () => {
    const data = checkpointDataKey('run-a', 100, 'u1', 'safetensors');
    assert.equal(describeKey(data), "step 100 of run 'run-a'");
    assert.equal(describeKey(manifestKeyFor(data)), "the manifest of step 100 of run 'run-a'");
    assert.equal(describeKey('runs/run-a/other'), "a stored object of run 'run-a'");
    assert.equal(describeKey('/etc/passwd'), 'a stored object');
    assert.equal(describePrefix('runs/run-a/checkpoints/'), "the checkpoints of run 'run-a'");
    assert.equal(describePrefix(''), 'the stored checkpoints');
    assert.equal(describePrefix('some/where'), 'the stored objects');
  });
});

describe('local blob store errors', () => {
  it('answers an upload blocked by a file where the run directory goes: 503 naming run and step only', async () => {
    const gw = await loggedGateway();
    try {
      // Something unexpected where runs/leakrun/ must be: mkdir of runs/leakrun/checkpoints fails with ENOTDIR.
      await mkdir(path.join(gw.dataDir, 'blobs', 'runs'), { recursive: true });
      await writeFile(path.join(gw.dataDir, 'blobs', 'runs', 'leakrun'), 'in the way');

      const res = await request(gw.app)
        .put('/v1/runs/leakrun/checkpoints/7')
        .set('content-type', SAFETENSORS)
        .set('authorization', 'Bearer local-secret-token')
        .send(BODY);
      assert.equal(res.status, 503, JSON.stringify(res.body));
      assert.equal(res.body.error.code, 'storage_unavailable');
      assert.match(res.body.error.message, /step 7 of run 'leakrun'/);
      assert.match(res.body.error.message, /could not store/);
      assertNothingLeaks(res.body, [gw.dataDir, 'ENOTDIR', 'blobs', 'mkdir']);

      // The log line of the 5xx has the detail (the OS error, its path) as the cause; no header anywhere.
      const line = errorRecord(gw.log.records());
      assert.equal(line.msg, res.body.error.message);
      const cause = line.cause as { code?: string; message?: string; path?: string };
      assert.equal(cause.code, 'ENOTDIR');
      assert.ok(cause.message?.includes(gw.dataDir), JSON.stringify(cause));
      assert.ok(cause.path?.startsWith(gw.dataDir), JSON.stringify(cause));
      assert.ok(gw.log.text().includes('ENOTDIR'));
      assert.ok(!gw.log.text().includes('local-secret-token'), 'the log never holds the Authorization header');
      assert.ok(!/authorization/i.test(gw.log.text()), 'the log never holds headers');
    } finally {
      await gw.close();
    }
  });

  it('reports a blob directory that is a file in /readyz without its path', async () => {
    const { dataDir } = await testEnv();
    const blobFile = path.join(dataDir, 'not-a-dir');
    await writeFile(blobFile, 'x');
    const gw = await loggedGateway({ TRAJGATE_BLOB_URL: blobFile });
    try {
      const res = await request(gw.app).get('/readyz');
      assert.equal(res.status, 503);
      assert.match(res.body.checks.storage, /blob directory is unavailable/);
      assertNothingLeaks(res.body, [blobFile, dataDir, gw.dataDir, 'not-a-dir']);
    } finally {
      await gw.close();
      await rm(dataDir, { recursive: true, force: true });
    }
  });

  it('keeps paths and OS messages out of every store error, with the OS error as the cause', async () => {
    const { dataDir: root } = await testEnv();
    const store = new LocalBlobStore(path.join(root, 'blobs'));
    try {
      const key = checkpointDataKey('blocked', 3, 'u1', 'safetensors');
      await mkdir(path.join(root, 'blobs', 'runs'), { recursive: true });
      await writeFile(path.join(root, 'blobs', 'runs', 'blocked'), 'in the way');

      const attempts: Array<[string, () => Promise<unknown>, RegExp]> = [
        ['putSmall', () => store.putSmall(manifestKeyFor(key), '{}'), /could not store the manifest of step 3/],
        [
          'commit',
          async () => {
            const writer = store.createWriter(key);
            await writer.write(new Uint8Array([1, 2, 3]));
            await writer.commit();
          },
          /could not store step 3 of run 'blocked'/,
        ],
      ];
      for (const [what, attempt, message] of attempts) {
        await assert.rejects(attempt, (err: unknown) => {
          assert.ok(isAppError(err), `${what}: ${String(err)}`);
          assert.equal(err.code, 'storage_unavailable');
          assert.equal(err.status, 503);
          assert.match(err.message, message);
          assert.ok(!err.message.includes(root), `${what}: ${err.message}`);
          assert.doesNotMatch(err.message, ROOTED_PATH);
          assert.doesNotMatch(err.message, /ENOTDIR|EEXIST/);
          assert.ok(err.cause instanceof Error, `${what}: the OS error is the cause`);
          assert.match(err.cause.message, /ENOTDIR|EEXIST/);
          return true;
        });
      }
      await writeFile(path.join(root, 'file-root'), 'x');
      await assert.rejects(
        () => new LocalBlobStore(path.join(root, 'file-root')).ping(),
        (err: unknown) =>
          isAppError(err) &&
          err.code === 'storage_unavailable' &&
          !err.message.includes(root) &&
          err.cause !== undefined,
      );
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});

describe('S3 blob store errors', () => {
  let server: RunningS3rver;
  before(async () => {
    server = await startS3rver('errors-test');
  });
  after(() => server.close());

  const secrets = () => {
    const { host, port } = new URL(server.endpoint);
    return ['no-such-bucket-x', 'errors-test', server.endpoint, host, `:${port}`, 'S3RVER', 's3://', 'http'];
  };

  it('answers an upload into a bucket that does not exist without naming bucket or endpoint', async () => {
    const gw = await loggedGateway({
      TRAJGATE_BLOB_URL: 's3://no-such-bucket-x/pre',
      TRAJGATE_S3_ENDPOINT: server.endpoint,
      TRAJGATE_S3_FORCE_PATH_STYLE: 'true',
      TRAJGATE_S3_PART_SIZE_MB: '5',
      AWS_ACCESS_KEY_ID: S3RVER_CREDENTIALS.accessKeyId,
      AWS_SECRET_ACCESS_KEY: S3RVER_CREDENTIALS.secretAccessKey,
    });
    try {
      const res = await request(gw.app)
        .put('/v1/runs/s3leak/checkpoints/12')
        .set('content-type', SAFETENSORS)
        .send(BODY);
      assert.equal(res.status, 503, JSON.stringify(res.body));
      assert.equal(res.body.error.code, 'storage_unavailable');
      assert.match(res.body.error.message, /could not store step 12 of run 's3leak'/);
      assert.match(res.body.error.message, /the configured bucket does not exist/);
      assertNothingLeaks(res.body, secrets());

      const ready = await request(gw.app).get('/readyz');
      assert.equal(ready.status, 503);
      assert.match(ready.body.checks.storage, /the configured bucket does not exist/);
      assertNothingLeaks(ready.body.checks.storage, secrets());

      const line = errorRecord(gw.log.records());
      const cause = line.cause as { type?: string; message?: string };
      assert.match(`${cause.type} ${cause.message}`, /NoSuchBucket|bucket does not exist/i);
      assert.ok(gw.log.text().includes('NoSuchBucket'), 'the log names the SDK error');
    } finally {
      await gw.close();
    }
  });

  it('names neither endpoint nor OS error when the server is unreachable', async () => {
    const own = await startS3rver('gone');
    const endpoint = own.endpoint;
    await own.close();
    const store = new S3BlobStore({
      bucket: 'gone',
      prefix: 'p/',
      endpoint,
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: S3RVER_CREDENTIALS,
      partSizeBytes: 5 * 1024 * 1024,
    });
    const { host, port } = new URL(endpoint);
    const key = checkpointDataKey('far', 5, 'u1', 'safetensors');
    try {
      const calls: Array<[() => Promise<unknown>, RegExp]> = [
        [() => store.ping(), /the blob store is unavailable/],
        [() => store.get(key), /could not read step 5 of run 'far'/],
        [() => store.putSmall(manifestKeyFor(key), '{}'), /could not store the manifest of step 5 of run 'far'/],
        [
          async () => {
            for await (const info of store.list('runs/far/checkpoints/')) assert.fail(info.key);
          },
          /could not list the checkpoints of run 'far'/,
        ],
      ];
      for (const [call, message] of calls) {
        await assert.rejects(call, (err: unknown) => {
          assert.ok(isAppError(err), String(err));
          assert.equal(err.code, 'storage_unavailable');
          assert.match(err.message, message);
          assert.match(err.message, /unreachable/);
          for (const secret of [endpoint, host, `:${port}`, 'gone', 'p/', 'ECONNREFUSED', 'S3RVER']) {
            assert.ok(!err.message.includes(secret), `'${err.message}' contains '${secret}'`);
          }
          assert.ok(err.cause !== undefined, 'the SDK error is the cause');
          return true;
        });
      }
    } finally {
      await store.close();
    }
  });
});

describe('error handler and request log', () => {
  function appThrowing(err: unknown) {
    const log = memoryLogger();
    const app = express();
    app.use(requestLog(log.logger));
    app.get('/boom', () => {
      throw err;
    });
    app.use(errorHandler(log.logger));
    return { app, log };
  }

  it('logs the cause of a 5xx and answers with the safe message only', async () => {
    const cause = Object.assign(new Error("EROFS: read-only file system, open '/srv/trajgate/blobs/x'"), {
      code: 'EROFS',
      path: '/srv/trajgate/blobs/x',
    });
    const { app, log } = appThrowing(errors.storageUnavailable("could not store step 1 of run 'r'", cause));
    const res = await request(app)
      .get('/boom?token=query-secret&access_token=other-secret&page=2')
      .set('authorization', 'Bearer header-secret');
    assert.equal(res.status, 503);
    assert.deepEqual(res.body, {
      error: { code: 'storage_unavailable', message: "could not store step 1 of run 'r'" },
    });
    const line = errorRecord(log.records());
    assert.equal((line.cause as { code?: string }).code, 'EROFS');
    assert.equal((line.cause as { path?: string }).path, '/srv/trajgate/blobs/x');
    assert.equal(line.url, '/boom?token=***&access_token=***&page=2');
    const text = log.text();
    for (const secret of ['query-secret', 'other-secret', 'header-secret']) assert.ok(!text.includes(secret), secret);
    assert.ok(!/authorization/i.test(text), 'no headers in the log');
    const requestLine = log.records().find((r) => r.msg === 'request');
    assert.ok(requestLine);
    assert.equal(requestLine.url, '/boom?token=***&access_token=***&page=2');
  });

  it('replaces a 5xx message that carries a path, URL or OS error code with a generic one', async () => {
    for (const message of [
      "cannot write: ENOTDIR: not a directory, mkdir '/var/lib/trajgate/blobs/runs/r'",
      'bucket at http://minio.internal:9000 failed',
      'open /data/blobs failed',
    ]) {
      const { app, log } = appThrowing(errors.storageUnavailable(message, new Error('detail')));
      const res = await request(app).get('/boom');
      assert.equal(res.status, 503);
      assert.deepEqual(res.body, { error: { code: 'storage_unavailable', message: 'the blob store is unavailable' } });
      assert.equal(errorRecord(log.records()).msg, message, 'the log keeps the original message');
    }
    const { app } = appThrowing(new Error("EACCES: permission denied, open '/etc/shadow'"));
    const res = await request(app).get('/boom');
    assert.deepEqual(res.body, { error: { code: 'internal', message: 'internal error' } });
  });

  it('masks secret-looking query values for the log', () => {
    assert.equal(loggableUrl('/v1/runs'), '/v1/runs');
    assert.equal(loggableUrl('/x?token=a&limit=5'), '/x?token=***&limit=5');
    assert.equal(
      loggableUrl('/x?X-Amz-Signature=abc&api_key=k&apiKey=k2'),
      '/x?X-Amz-Signature=***&api_key=***&apiKey=***',
    );
    assert.equal(loggableUrl('/x?%74oken=a'), '/x?%74oken=***');
  });
});
