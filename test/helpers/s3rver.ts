import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import S3rver from 's3rver';

export interface RunningS3rver {
  /** `http://127.0.0.1:<port>`; use path-style addressing and credentials S3RVER / S3RVER. */
  endpoint: string;
  bucket: string;
  close(): Promise<void>;
}

export const S3RVER_CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };

/** An in-process S3-compatible server on a free port, one empty bucket, data in a fresh temp directory. */
export async function startS3rver(bucket = 'trajgate-test'): Promise<RunningS3rver> {
  const directory = await mkdtemp(path.join(os.tmpdir(), 'trajgate-s3rver-'));
  const server = new S3rver({
    address: '127.0.0.1',
    port: 0,
    silent: true,
    directory,
    configureBuckets: [{ name: bucket }],
  });
  const { port } = await server.run();
  return {
    endpoint: `http://127.0.0.1:${port}`,
    bucket,
    async close() {
      await server.close();
      await rm(directory, { recursive: true, force: true });
    },
  };
}
