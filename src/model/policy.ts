import { z } from 'zod';

/**
 * Retention policies (docs/architecture.md §6). `Policy` is the full policy the engine runs; `PolicyInput` is what
 * clients store or send inline: the same shape with every key optional (nested objects too), unknown keys
 * rejected. `resolvePolicy` fills what the input leaves out from DEFAULT_POLICY, key by key.
 *
 * The default is meant to be sensible untouched: the newest checkpoint for resuming, two representatives
 * of each of three phases, up to four high-change checkpoints, the best by validation loss, no budget;
 * under a budget, up to half of it held back for an hour while the run goes on.
 */
const count = z.number().int('must be a whole number').min(0, 'must be ≥ 0').max(1_000_000, 'must be ≤ 1000000');
const positive = z.number().int('must be a whole number').min(1, 'must be ≥ 1').max(Number.MAX_SAFE_INTEGER);

const strict = <T extends z.ZodRawShape>(shape: T, what: string) =>
  z.strictObject(shape, {
    error: (issue) =>
      issue.code === 'unrecognized_keys'
        ? `unknown ${what} key${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `'${k}'`).join(', ')}; allowed: ${Object.keys(shape).join(', ')}`
        : undefined,
  });

const Budget = strict(
  {
    /** Most checkpoints kept; null: no limit. */
    maxCheckpoints: positive.nullable(),
    /** Most bytes kept; null: no limit. */
    maxBytes: positive.nullable(),
  },
  'budget',
);

const PhaseClass = strict(
  {
    count: z.number().int('must be a whole number').min(1, 'must be ≥ 1').max(10, 'must be ≤ 10'),
    perPhase: count,
    /** `fraction` of plannedSteps, `dynamics` of the run's update norms and losses, `auto`: fraction when plannedSteps is known. */
    by: z.enum(['auto', 'fraction', 'dynamics']),
  },
  'phase',
);

const ChangeClass = strict(
  { max: count, zThreshold: z.number().positive('must be > 0').max(1000, 'must be ≤ 1000') },
  'change',
);

const BestClass = strict(
  {
    metric: z.enum(['valLoss', 'trainLoss', 'gradNorm', 'gapIncrement']),
    mode: z.enum(['min', 'max']),
    count,
  },
  'best',
);

const HoldClass = strict(
  {
    /**
     * Under a budget, the most discarded checkpoints whose bytes are held back at once while the run goes on,
     * as a share of the budget (of budget.maxCheckpoints, rounded down, and of budget.maxBytes); 0: none.
     */
    share: z.number().min(0, 'must be ≥ 0').max(1, 'must be ≤ 1'),
    /** A held checkpoint's bytes are deleted this long after the last decision that held it. */
    seconds: z
      .number()
      .int('must be a whole number')
      .min(0, 'must be ≥ 0')
      .max(365 * 86_400, 'must be ≤ one year'),
  },
  'hold',
);

const shape = {
  budget: Budget,
  latest: count,
  phase: PhaseClass,
  change: ChangeClass,
  /** null: no `best` class. */
  best: BestClass.nullable(),
  /** Keep steps that are multiples of this; null: no `every` class. */
  every: positive.nullable(),
  /** Seconds between a checkpoint's eviction and the deletion of its bytes (restorable meanwhile). */
  graceSeconds: z
    .number()
    .int('must be a whole number')
    .min(0, 'must be ≥ 0')
    .max(365 * 86_400, 'must be ≤ one year'),
  /**
   * Discarded checkpoints that a later decision of a run still uploading may keep (the runners-up of the
   * coverage objective) keep their bytes past graceSeconds: early decisions, made on part of the
   * trajectory, then need not be final (docs/architecture.md §6, "Decisions while the run goes on").
   * Absent: DEFAULT_HOLD. A resolved policy carries it only when the policy sets it, so policies written
   * before it existed resolve as they did.
   */
  hold: HoldClass.optional(),
};

export const Policy = strict(shape, 'policy');
export type Policy = z.infer<typeof Policy>;

export const PolicyInput = strict(
  {
    budget: Budget.partial().optional(),
    latest: shape.latest.optional(),
    phase: PhaseClass.partial().optional(),
    change: ChangeClass.partial().optional(),
    best: BestClass.partial().nullable().optional(),
    every: shape.every.optional(),
    graceSeconds: shape.graceSeconds.optional(),
    hold: HoldClass.partial().optional(),
  },
  'policy',
);
export type PolicyInput = z.infer<typeof PolicyInput>;

export const DEFAULT_POLICY: Readonly<Policy> = deepFreeze<Policy>({
  budget: { maxCheckpoints: null, maxBytes: null },
  latest: 1,
  phase: { count: 3, perPhase: 2, by: 'auto' },
  change: { max: 4, zThreshold: 3 },
  best: { metric: 'valLoss', mode: 'min', count: 1 },
  every: null,
  graceSeconds: 3600,
});

/** What a policy without `hold` holds back: up to half the budget, for an hour after the last decision that holds it. */
export const DEFAULT_HOLD: Readonly<NonNullable<Policy['hold']>> = deepFreeze({ share: 0.5, seconds: 3600 });

/** The full policy: `input` over DEFAULT_POLICY (nested objects merge key by key; an explicit null stays null). */
export function resolvePolicy(input: PolicyInput): Policy {
  const d = DEFAULT_POLICY;
  const pick = <T>(value: T | undefined, fallback: T): T => (value === undefined ? fallback : value);
  return {
    budget: {
      maxCheckpoints: pick(input.budget?.maxCheckpoints, d.budget.maxCheckpoints),
      maxBytes: pick(input.budget?.maxBytes, d.budget.maxBytes),
    },
    latest: pick(input.latest, d.latest),
    phase: {
      count: pick(input.phase?.count, d.phase.count),
      perPhase: pick(input.phase?.perPhase, d.phase.perPhase),
      by: pick(input.phase?.by, d.phase.by),
    },
    change: {
      max: pick(input.change?.max, d.change.max),
      zThreshold: pick(input.change?.zThreshold, d.change.zThreshold),
    },
    best:
      input.best === null
        ? null
        : {
            metric: pick(input.best?.metric, d.best?.metric ?? 'valLoss'),
            mode: pick(input.best?.mode, d.best?.mode ?? 'min'),
            count: pick(input.best?.count, d.best?.count ?? 1),
          },
    every: pick(input.every, d.every),
    graceSeconds: pick(input.graceSeconds, d.graceSeconds),
    ...(input.hold === undefined
      ? {}
      : {
          hold: {
            share: pick(input.hold.share, DEFAULT_HOLD.share),
            seconds: pick(input.hold.seconds, DEFAULT_HOLD.seconds),
          },
        }),
  };
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}
