/**
 * trajgate's client SDK (`trajgate/sdk`). Ships alone: it imports nothing from the server, only the wire
 * formats it shares with it.
 *
 *   const client = new TrajgateClient({ url: 'http://localhost:8080' });
 *   const run = client.run('mnist-1', { run: { plannedSteps: 900, trainSize: 2000 } });
 *   await run.log({ step, trainLoss, lr, gradNorm, gradVariance, updateNorm });
 *   await run.checkpoint(step, tensors);   // queued: training goes on while it uploads
 *   await run.close();
 */
export { TrajgateClient, type CheckpointSource, type ClientOptions, type UploadOptions } from './client.js';
export { TrajgateConnectionError, TrajgateError, type KnownErrorCode } from './errors.js';
export { BackgroundQueue, type QueueOptions } from './queue.js';
export { isRetryable, withRetry, type RetryOptions } from './retry.js';
export { RunLogger, type RunLoggerOptions } from './run-logger.js';
export type * from './types.js';
export type { TensorData } from '../wire/safetensors.js';
