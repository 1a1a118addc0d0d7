/**
 * trajgate's client SDK (`@trajgate/sdk`). Ships alone: it imports nothing from the server. It owns the wire
 * formats (`@trajgate/sdk/wire/*`) and the wire contract (`@trajgate/sdk/contract`: API types and the error
 * catalogue) that the gateway builds on. The tfjs adapter is `@trajgate/sdk/tfjs`.
 *
 *   const client = new TrajgateClient({ url: 'http://localhost:8080' }); // token: $TRAJGATE_TOKEN, if set
 *   const run = client.run('mnist-1', { plannedSteps: 900, trainSize: 2000 });
 *   await run.log({ step, trainLoss, lr, gradNorm, gradVariance, updateNorm }); // batched in the background
 *   await run.checkpoint(step, tensorsFromModel(model));                       // queued upload
 *   await run.close();                                                          // sends the rest, reports failures
 */
export {
  TrajgateClient,
  type AuditQuery,
  type CheckpointListOptions,
  type CheckpointPageQuery,
  type ClientOptions,
  type MetricListOptions,
  type MetricPageQuery,
  type MetricsQuery,
  type UploadOptions,
} from './client.js';
export { TrajgateConnectionError, TrajgateError, type KnownErrorCode } from './errors.js';
export { BackgroundQueue, type QueueOptions } from './queue.js';
export { isRetryable, withRetry, type RetryOptions } from './retry.js';
export { RunLogger, type RunLoggerOptions } from './run-logger.js';
export {
  DEFAULT_HASH_FIRST_BYTES,
  type ByteStream,
  type CheckpointSource,
  type TensorInput,
  type TensorMap,
} from './source.js';
// Every API type, access control's included: Role, TokenInput, Token, CreatedToken, AuditAction, AuditEntry.
export type * from './contract/api.js';
export { ERROR_CODES, ERROR_STATUS, type ErrorCode } from './contract/error-codes.js';
export type { Progress } from './progress.js';
export type { TensorData } from './wire/safetensors.js';
