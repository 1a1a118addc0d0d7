import { z } from 'zod';

/**
 * Retention policies (DESIGN §6). A stored or inline policy is a partial JSON object: every key is
 * optional and falls back to DEFAULT_POLICY, key by key (nested objects merge). The default is meant to be
 * sensible untouched: the newest checkpoint for resuming, two representatives of each of three phases,
 * up to four high-change checkpoints, the best by validation loss, and no budget beyond that.
 */
const count = z.number().int().min(0).max(1_000_000);
const positive = z.number().int().min(1).max(Number.MAX_SAFE_INTEGER);

export const PolicyInput = z
  .object({
    budget: z
      .object({
        maxCheckpoints: positive.nullable().optional(),
        maxBytes: positive.nullable().optional(),
      })
      .strict()
      .optional(),
    latest: count.optional(),
    phase: z
      .object({
        count: z.number().int().min(1).max(10).optional(),
        perPhase: count.optional(),
        by: z.enum(['auto', 'fraction', 'dynamics']).optional(),
      })
      .strict()
      .optional(),
    change: z
      .object({
        max: count.optional(),
        zThreshold: z.number().positive().max(1000).optional(),
      })
      .strict()
      .optional(),
    best: z
      .object({
        metric: z.enum(['valLoss', 'trainLoss', 'gradNorm', 'gapIncrement']).optional(),
        mode: z.enum(['min', 'max']).optional(),
        count: count.optional(),
      })
      .strict()
      .nullable()
      .optional(),
    every: positive.nullable().optional(),
    graceSeconds: z.number().int().min(0).max(365 * 86_400).optional(),
  })
  .strict();
export type PolicyInput = z.infer<typeof PolicyInput>;

export interface Policy {
  budget: { maxCheckpoints: number | null; maxBytes: number | null };
  latest: number;
  phase: { count: number; perPhase: number; by: 'auto' | 'fraction' | 'dynamics' };
  change: { max: number; zThreshold: number };
  best: { metric: 'valLoss' | 'trainLoss' | 'gradNorm' | 'gapIncrement'; mode: 'min' | 'max'; count: number } | null;
  every: number | null;
  graceSeconds: number;
}

export const DEFAULT_POLICY: Readonly<Policy> = Object.freeze<Policy>({
  budget: { maxCheckpoints: null, maxBytes: null },
  latest: 1,
  phase: { count: 3, perPhase: 2, by: 'auto' },
  change: { max: 4, zThreshold: 3 },
  best: { metric: 'valLoss', mode: 'min', count: 1 },
  every: null,
  graceSeconds: 3600,
});

/** The full policy: `input` over the defaults. */
export function resolvePolicy(input: PolicyInput): Policy {
  const d = DEFAULT_POLICY;
  return {
    budget: {
      maxCheckpoints: input.budget?.maxCheckpoints !== undefined ? input.budget.maxCheckpoints : d.budget.maxCheckpoints,
      maxBytes: input.budget?.maxBytes !== undefined ? input.budget.maxBytes : d.budget.maxBytes,
    },
    latest: input.latest ?? d.latest,
    phase: { ...d.phase, ...input.phase },
    change: { ...d.change, ...input.change },
    best: input.best === null ? null : { ...d.best!, ...input.best },
    every: input.every !== undefined ? input.every : d.every,
    graceSeconds: input.graceSeconds ?? d.graceSeconds,
  };
}
