import type { Request, RequestHandler, Response } from 'express';
import { BurstyRateLimiter, RateLimiterMemory, RateLimiterRes } from 'rate-limiter-flexible';
import { AppError, type ErrorDetails } from '../errors.js';
import type { LimitViolation } from '../model/limits.js';

/**
 * Limits on what callers send. Input limits (`model/limits.ts`) are refused with 422 `limit_exceeded`.
 * Rate limits are kept by `rate-limiter-flexible` in this process's memory (fixed windows per key); a
 * refusal is a 429 `rate_limited` whose `Retry-After` header says, in whole seconds (at least 1), when the
 * window that refused it ends. Every message names the limit and the variable that sets it.
 */

/** Throws a violation of an input limit as 422 `limit_exceeded`, details `{limit, max, value[, point]}`. */
export function refuseOverLimit(violation: LimitViolation | null): void {
  if (violation === null) return;
  const { limit, max, value, point } = violation;
  throw new AppError('limit_exceeded', violation.message, {
    limit,
    max,
    value,
    ...(point === undefined ? {} : { point }),
  });
}

/** The window of the burst allowance, in seconds: `burst` requests beyond the rate per window. */
export const BURST_WINDOW_S = 10;

export interface RateLimitOptions {
  /** Requests per second per key (TRAJGATE_RATE_LIMIT_RPS); 0 turns the limit off. */
  pointsPerSecond: number;
  /** Requests per key beyond that rate in each BURST_WINDOW_S seconds (TRAJGATE_RATE_LIMIT_BURST). */
  burst?: number;
}

/**
 * Limits each caller's request rate. `key` names the caller (mounted after authentication:
 * `res.locals.principal?.id ?? req.ip`).
 */
export function rateLimit(options: RateLimitOptions, key: (req: Request, res: Response) => string): RequestHandler {
  const { pointsPerSecond, burst = 0 } = options;
  if (pointsPerSecond <= 0) return (_req, _res, next) => next();
  const perSecond = new RateLimiterMemory({ keyPrefix: 'rps', points: pointsPerSecond, duration: 1 });
  const limiter =
    burst > 0
      ? new BurstyRateLimiter(
          perSecond,
          new RateLimiterMemory({ keyPrefix: 'burst', points: burst, duration: BURST_WINDOW_S }),
        )
      : perSecond;
  const limit =
    `${pointsPerSecond} requests per second per caller (TRAJGATE_RATE_LIMIT_RPS)` +
    (burst > 0 ? ` with ${burst} more per ${BURST_WINDOW_S} s (TRAJGATE_RATE_LIMIT_BURST)` : '');
  return (req, res, next) => {
    limiter.consume(key(req, res)).then(
      () => next(),
      (rejection: unknown) => {
        if (!(rejection instanceof RateLimiterRes)) {
          next(rejection);
          return;
        }
        const retryAfter = retryAfterSeconds(rejection);
        next(
          refuse(res, retryAfter, `too many requests: the limit is ${limit}; retry after ${retryAfter} s`, {
            limit: 'requests per second',
            max: pointsPerSecond,
            burst,
          }),
        );
      },
    );
  };
}

/**
 * A budget of points per key and window (e.g. metric points per run per minute). `take` consumes
 * `points` or throws a 429 naming the limit (a 422 if `points` alone exceed the budget); `giveBack`
 * returns points whose work did not happen.
 */
export class PointBudget {
  private readonly limiter: RateLimiterMemory;

  constructor(
    /** Points per window per key; 0 turns the budget off. */
    readonly points: number,
    readonly windowSeconds: number,
    /** What the points are, for messages, e.g. 'metric points per run per minute'. */
    readonly limit: string,
    /** The environment variable that sets `points`. */
    readonly setting: string,
  ) {
    this.limiter = new RateLimiterMemory({ keyPrefix: limit, points: Math.max(points, 1), duration: windowSeconds });
  }

  async take(key: string, points: number, res: Response): Promise<void> {
    if (this.points <= 0 || points <= 0) return;
    if (points > this.points) {
      // No wait would let it through: refused as an input over the limit, not as a rate.
      refuseOverLimit({
        limit: this.limit,
        max: this.points,
        value: points,
        setting: this.setting,
        message: `${points} points at once exceed the limit of ${this.points} ${this.limit} (${this.setting})`,
      });
    }
    try {
      await this.limiter.consume(key, points);
    } catch (rejection) {
      if (!(rejection instanceof RateLimiterRes)) throw rejection;
      // A refused request takes nothing from the budget.
      await this.limiter.reward(key, points);
      const retryAfter = retryAfterSeconds(rejection);
      const used = Math.max(rejection.consumedPoints - points, 0);
      throw refuse(
        res,
        retryAfter,
        `${points} more would exceed the limit of ${this.points} ${this.limit} (${this.setting}); ` +
          `${used} used in this window; retry after ${retryAfter} s`,
        { limit: this.limit, max: this.points, value: used + points },
      );
    }
  }

  async giveBack(key: string, points: number): Promise<void> {
    if (this.points <= 0 || points <= 0) return;
    await this.limiter.reward(key, points);
  }
}

/** Whole seconds until the refusing window ends, at least 1. */
export function retryAfterSeconds(rejection: RateLimiterRes): number {
  return Math.max(1, Math.ceil(rejection.msBeforeNext / 1000));
}

function refuse(res: Response, retryAfter: number, message: string, details: ErrorDetails): AppError {
  res.setHeader('Retry-After', String(retryAfter));
  return new AppError('rate_limited', message, { ...details, retryAfter });
}
