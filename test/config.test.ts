import assert from 'node:assert/strict';
import { availableParallelism } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { ConfigError, loadConfig } from '../src/config.js';

describe('config', () => {
  it('has embedded defaults: port 8080, local blobs and SQLite under ./data', () => {
    const config = loadConfig({});
    const dataDir = path.resolve('./data');
    assert.equal(config.port, 8080);
    assert.equal(config.dataDir, dataDir);
    assert.equal(config.blobUrl, path.join(dataDir, 'blobs'));
    assert.equal(config.catalogUrl, `sqlite://${path.join(dataDir, 'catalog.db')}`);
    assert.equal(config.limits.maxCheckpointBytes, 64 * 1024 ** 3);
  });

  it('reads every variable and treats empty strings as unset', () => {
    const config = loadConfig({
      PORT: '9000',
      TRAJGATE_DATA_DIR: '/tmp/tg',
      TRAJGATE_BLOB_URL: 's3://bucket/prefix',
      TRAJGATE_S3_ENDPOINT: 'http://127.0.0.1:9999',
      TRAJGATE_S3_FORCE_PATH_STYLE: 'true',
      TRAJGATE_S3_PART_SIZE_MB: '16',
      TRAJGATE_S3_QUEUE_SIZE: '8',
      AWS_REGION: 'eu-west-1',
      TRAJGATE_MAX_CHECKPOINT_MB: '10',
      TRAJGATE_CATALOG_URL: '',
      TRAJGATE_ANALYSIS_THREADS: '3',
    });
    assert.equal(config.port, 9000);
    assert.equal(config.blobUrl, 's3://bucket/prefix');
    assert.equal(config.s3.endpoint, 'http://127.0.0.1:9999');
    assert.equal(config.s3.forcePathStyle, true);
    assert.equal(config.s3.region, 'eu-west-1');
    assert.equal(config.s3.partSizeBytes, 16 * 1024 * 1024);
    assert.equal(config.s3.queueSize, 8);
    assert.equal(loadConfig({}).s3.queueSize, 4);
    assert.equal(config.limits.maxCheckpointBytes, 10 * 1024 * 1024);
    assert.equal(config.catalogUrl, 'sqlite:///tmp/tg/catalog.db');
    assert.equal(config.analysisThreads, 3);
    assert.equal(loadConfig({}).analysisThreads, Math.max(0, availableParallelism() - 2));
  });

  it('reports every problem at once', () => {
    assert.throws(
      () =>
        loadConfig({
          PORT: 'eighty',
          TRAJGATE_S3_FORCE_PATH_STYLE: 'yes',
          TRAJGATE_LOG_LEVEL: 'loud',
          TRAJGATE_S3_ENDPOINT: 'nope',
          TRAJGATE_S3_QUEUE_SIZE: '0',
          TRAJGATE_ANALYSIS_THREADS: '-1',
        }),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError);
        assert.equal(err.problems.length, 6, err.message);
        for (const name of [
          'PORT',
          'TRAJGATE_S3_FORCE_PATH_STYLE',
          'TRAJGATE_LOG_LEVEL',
          'TRAJGATE_S3_ENDPOINT',
          'TRAJGATE_S3_QUEUE_SIZE',
          'TRAJGATE_ANALYSIS_THREADS',
        ]) {
          assert.match(err.message, new RegExp(name));
        }
        return true;
      },
    );
  });

  it('binds to loopback and runs open there; elsewhere access control is on unless explicitly off', () => {
    const local = loadConfig({});
    assert.equal(local.host, '127.0.0.1');
    assert.equal(local.auth.mode, 'none');
    assert.equal(loadConfig({ HOST: '0.0.0.0' }).auth.mode, 'tokens');
    assert.equal(loadConfig({ HOST: '0.0.0.0', TRAJGATE_AUTH: 'none' }).auth.mode, 'none', 'explicitly open');
    assert.equal(loadConfig({ TRAJGATE_AUTH: 'tokens' }).auth.mode, 'tokens');
    assert.throws(
      () => loadConfig({ TRAJGATE_AUTH: 'tokens', TRAJGATE_ADMIN_TOKEN: 'short' }),
      /TRAJGATE_ADMIN_TOKEN: must be at least 32 characters/,
    );
    assert.throws(
      () => loadConfig({ TRAJGATE_AUTH: 'none', TRAJGATE_ADMIN_TOKEN: 'x'.repeat(40) }),
      /tokens would not be checked/,
    );
    for (const host of ['127.0.0.1', '127.1.2.3', 'localhost', '::1'])
      assert.equal(loadConfig({ HOST: host }).auth.mode, 'none', host);
  });

  it('is frozen', () => {
    const config = loadConfig({});
    assert.ok(Object.isFrozen(config) && Object.isFrozen(config.limits) && Object.isFrozen(config.s3));
    assert.throws(() => {
      (config as { port: number }).port = 1;
    }, TypeError);
  });
});
