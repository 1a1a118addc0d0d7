import { sendBlob } from '../send-blob.js';
import { Router } from 'express';
import { z } from 'zod';
import { AppError } from '../../errors.js';
import type { ShardUploadResult } from '@trajgate/sdk/contract';
import { MEDIA_TYPES, SHA256_HEADER, SHARD_COUNT_HEADER } from '@trajgate/sdk/wire/formats';
import { callerOf, need } from '../access.js';
import type { AppContext } from '../context.js';
import { parseRunId, parseStep } from '../ids.js';
import { parseInput } from '../validate.js';
import { contentLengthOf, declaredSha, requestedRange, summariseDecision } from './checkpoints.js';

const MAX_SHARDS = 10_000;
const FILE_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$/;

/**
 * Sharded steps (docs/api.md): PUT one file of a step, GET one file (with Range) or the step's index in
 * Hugging Face's format. The step's record (GET …/checkpoints/{step}) lists its files.
 */
export function shardRoutes(ctx: AppContext): Router {
  const router = Router();

  router.put('/v1/runs/:run/checkpoints/:step/shards/:file', need('writer'), async (req, res) => {
    const run = parseRunId(req.params.run);
    const step = parseStep(req.params.step);
    const file = parseFile(req.params.file);
    parseInput(z.strictObject({}), req.query, 'query');
    const outcome = await ctx.runs.uploadShard({
      caller: callerOf(res),
      run,
      step,
      file,
      shardCount: shardCountOf(req.get(SHARD_COUNT_HEADER)),
      // (optional once the step's model.safetensors.index.json or another of its files declared it)
      body: req,
      contentType: req.headers['content-type'],
      contentLength: contentLengthOf(req.headers['content-length']),
      sha256: declaredSha(req.get(SHA256_HEADER)),
    });
    const body: ShardUploadResult = {
      run,
      step,
      file,
      sha256: outcome.sha256,
      bytes: outcome.bytes,
      shardCount: outcome.shardCount,
      shardsReceived: outcome.shardsReceived,
      status: outcome.status,
      checkpoint: outcome.checkpoint && {
        ...outcome.checkpoint,
        decision: outcome.decision && summariseDecision(outcome.decision),
      },
    };
    res.status(outcome.status === 'committed' ? 201 : outcome.status === 'staged' ? 202 : 200).json(body);
  });

  router.get('/v1/runs/:run/checkpoints/:step/shards/:file', need('reader'), async (req, res) => {
    const run = parseRunId(req.params.run);
    const step = parseStep(req.params.step);
    const file = parseFile(req.params.file);
    const target = await ctx.runs.downloadableShard(run, step, file);
    const etag = target.index ? undefined : `"${target.sha256}"`;
    const ifRange = req.get('if-range');
    const range =
      ifRange === undefined || ifRange === etag ? requestedRange(req.get('range'), target.bytes, res) : null;
    res.setHeader('Content-Type', target.index ? 'application/json' : MEDIA_TYPES[target.format]);
    if (etag) res.setHeader('ETag', etag);
    res.setHeader('Accept-Ranges', 'bytes');
    res.setHeader('Content-Disposition', `attachment; filename="${file}"`);
    if (etag && req.get('if-none-match') === etag) {
      res.status(304).end();
      return;
    }
    const body = await ctx.runs.openShard(target.blobKey, target.bytes, range ?? undefined);
    await sendBlob(req, res, body, target.bytes, range);
  });

  return router;
}

function parseFile(value: string): string {
  if (!FILE_PATTERN.test(value) || value.includes('..')) {
    throw new AppError(
      'invalid_request',
      `file name '${value.slice(0, 220)}' is invalid: use 1-200 characters from [A-Za-z0-9._-], starting with a letter or digit, without '..'`,
      { file: value.slice(0, 220) },
    );
  }
  return value;
}

function shardCountOf(header: string | undefined): number | undefined {
  if (header === undefined) return undefined;
  const n = Number(header.trim());
  if (!Number.isSafeInteger(n) || n < 1 || n > MAX_SHARDS || !/^\d+$/.test(header.trim())) {
    throw new AppError(
      'invalid_request',
      `${SHARD_COUNT_HEADER} must be the number of files of the step, an integer from 1 to ${MAX_SHARDS}, not '${header.slice(0, 40)}'`,
      { header: SHARD_COUNT_HEADER },
    );
  }
  return n;
}
