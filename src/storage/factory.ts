import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Config } from '../config.js';
import type { BlobStore } from './blob-store.js';
import { LocalBlobStore } from './local-blob-store.js';

export type BlobLocation = { kind: 'local'; root: string } | { kind: 's3'; bucket: string; prefix: string };

const SUPPORTED = 's3://bucket/prefix, file:///absolute/dir, or a plain directory path';

/**
 * `s3://bucket[/prefix]` → S3 (a non-empty prefix always ends with '/'); `file:///abs` or a plain path → a
 * local directory (resolved against the working directory). Any other scheme throws.
 */
export function parseBlobUrl(blobUrl: string): BlobLocation {
  const scheme = /^([a-zA-Z][a-zA-Z0-9+.-]*):/.exec(blobUrl)?.[1]?.toLowerCase();
  // A one-letter "scheme" is a Windows drive (C:\data), i.e. a plain path.
  if (scheme === undefined || scheme.length === 1) return { kind: 'local', root: path.resolve(blobUrl) };
  if (scheme === 'file') return { kind: 'local', root: fileURLToPath(blobUrl) };
  if (scheme === 's3') return parseS3Url(blobUrl);
  throw new Error(`unsupported blob URL '${blobUrl}': use ${SUPPORTED}`);
}

function parseS3Url(blobUrl: string): BlobLocation {
  const match = /^s3:\/\/([^/]+)\/?(.*)$/i.exec(blobUrl);
  if (!match) throw new Error(`invalid S3 blob URL '${blobUrl}': expected s3://bucket/prefix`);
  const [, bucket, rawPrefix] = match;
  const trimmed = rawPrefix.replace(/^\/+|\/+$/g, '');
  return { kind: 's3', bucket, prefix: trimmed === '' ? '' : `${trimmed}/` };
}

/**
 * Picks the blob backend from `TRAJGATE_BLOB_URL` and the S3 settings. The S3 backend (and the AWS SDK, ~20 MiB
 * resident) is loaded only when the URL names a bucket.
 */
export async function createBlobStore(options: { blobUrl: string; s3: Config['s3'] }): Promise<BlobStore> {
  const location = parseBlobUrl(options.blobUrl);
  if (location.kind === 'local') return new LocalBlobStore(location.root);
  const { S3BlobStore } = await import('./s3-blob-store.js');
  const { s3 } = options;
  return new S3BlobStore({
    bucket: location.bucket,
    prefix: location.prefix,
    endpoint: s3.endpoint,
    region: s3.region,
    forcePathStyle: s3.forcePathStyle,
    credentials:
      s3.accessKeyId && s3.secretAccessKey
        ? { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey }
        : undefined,
    partSizeBytes: s3.partSizeBytes,
    queueSize: s3.queueSize,
  });
}
