/** Checkpoint wire formats and their media types. Imports nothing, so the SDK can use it. */
export const CHECKPOINT_FORMATS = ['safetensors', 'native'] as const;
export type CheckpointFormat = (typeof CHECKPOINT_FORMATS)[number];

export const MEDIA_TYPES: Record<CheckpointFormat, string> = {
  safetensors: 'application/vnd.safetensors',
  native: 'application/vnd.trajgate.checkpoint+msgpack',
};

export const OCTET_STREAM = 'application/octet-stream';

/** Optional request header carrying the lowercase hex SHA-256 of the whole body. */
export const SHA256_HEADER = 'x-trajgate-sha256';
/** The header each file of a sharded step carries: how many files the step has. */
export const SHARD_COUNT_HEADER = 'x-trajgate-shard-count';
/** A sharded step's index, in Hugging Face's format, as the gateway serves it beside the files. */
export const SHARD_INDEX_FILE = 'model.safetensors.index.json';

export const FILE_EXTENSIONS: Record<CheckpointFormat, string> = {
  safetensors: 'safetensors',
  native: 'tgckpt',
};

/** Media type of msgpack-encoded metric batches (`application/x-msgpack` is accepted too). */
export const MSGPACK = 'application/msgpack';
