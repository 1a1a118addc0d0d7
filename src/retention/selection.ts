import type { CoverageModel } from './coverage-model.js';
import type { Policy } from '../model/policy.js';
import type { RetentionCandidate, RetentionClass } from './types.js';

/** A checkpoint a named class asked for, while requests are deferred (see Selection.deferRequests). */
export interface ClassRequest {
  index: number;
  cls: RetentionClass;
  reason: string;
}

/**
 * The kept set being built, with each kept checkpoint's classes and reasons and the budget accounting.
 * A `phase` class recorded with a null reason gets its sentence once the kept set is final (it cites the
 * coverage the final set gives).
 */
export class Selection {
  /**
   * When set, `add` without `force` records a request (in the order the named classes ask) instead of keeping
   * the checkpoint, and accepts it; cover-selection.ts then decides the requests together with coverage.
   */
  deferRequests = false;
  readonly requests: ClassRequest[] = [];
  readonly classes: (RetentionClass[] | undefined)[];
  readonly reasons: ((string | null)[] | undefined)[];
  /** Why a checkpoint a named class asked for was not kept (the budget was taken). */
  readonly refusals: (string | undefined)[];
  bytesKept = 0;
  count = 0;

  constructor(
    readonly checkpoints: readonly RetentionCandidate[],
    readonly policy: Policy,
    readonly coverage: CoverageModel,
  ) {
    const n = checkpoints.length;
    this.classes = new Array(n);
    this.reasons = new Array(n);
    this.refusals = new Array(n);
  }

  available(i: number): boolean {
    return this.checkpoints[i].available !== false;
  }

  budgetIsFinite(): boolean {
    return this.policy.budget.maxCheckpoints !== null || this.policy.budget.maxBytes !== null;
  }

  /** Whether keeping checkpoint i too still fits the budget. */
  fits(i: number): boolean {
    const { maxCheckpoints, maxBytes } = this.policy.budget;
    if (maxCheckpoints !== null && this.count + 1 > maxCheckpoints) return false;
    return maxBytes === null || this.bytesKept + this.checkpoints[i].bytes <= maxBytes;
  }

  /** Whether what is kept exceeds the budget (only latest and pinned checkpoints can make it so). */
  overBudget(): boolean {
    const { maxCheckpoints, maxBytes } = this.policy.budget;
    return (maxCheckpoints !== null && this.count > maxCheckpoints) || (maxBytes !== null && this.bytesKept > maxBytes);
  }

  /**
   * Records class `cls` for checkpoint i, keeping it if it is not kept yet; false (nothing recorded) when
   * it would not fit the budget. `force` ignores the budget (latest, pinned). While requests are deferred,
   * a call without `force` only records the request and answers true.
   */
  add(i: number, cls: RetentionClass, reason: string | null, force = false): boolean {
    if (this.deferRequests && !force) {
      this.requests.push({ index: i, cls, reason: reason ?? cls });
      return true;
    }
    if (!this.coverage.isKept(i)) {
      if (!force && !this.fits(i)) return false;
      this.coverage.keep(i);
      this.count++;
      this.bytesKept += this.checkpoints[i].bytes;
      this.classes[i] = [];
      this.reasons[i] = [];
    }
    if (!this.classes[i]!.includes(cls)) {
      this.classes[i]!.push(cls);
      this.reasons[i]!.push(reason);
    }
    return true;
  }

  /** Whether i is kept by `phase` alone (so coverage refinement may move it). */
  keptForCoverageOnly(i: number): boolean {
    const classes = this.classes[i];
    return this.coverage.isKept(i) && classes !== undefined && classes.length === 1 && classes[0] === 'phase';
  }

  /** Moves a checkpoint kept for coverage only from `from` to `to` (not kept). */
  move(from: number, to: number): void {
    this.coverage.unkeep(from);
    this.coverage.keep(to);
    this.bytesKept += this.checkpoints[to].bytes - this.checkpoints[from].bytes;
    this.classes[to] = this.classes[from];
    this.reasons[to] = this.reasons[from];
    this.classes[from] = undefined;
    this.reasons[from] = undefined;
  }
}
