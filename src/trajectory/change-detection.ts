import type { ChangeKind } from '@trajgate/sdk/contract';

export type { ChangeKind } from '@trajgate/sdk/contract';

/**
 * High-change score and event kind of each checkpoint (docs/architecture.md §5, "The change score").
 *
 * Each series — x = log(updateNormPerStep), and log(trainLoss) where known — is judged against its recent
 * level, not against the previous checkpoint. Tukey's resistant line through the reference R_t (the last W
 * checkpoints before t with a value, at most 4W back, since the current level began, leaving out stalls,
 * isolated outliers and a suspect excursion) predicts x̂_t; its deviation is put on the scale of a full
 * contiguous window and of the run's recent deviations:
 *
 *   e_t = (x_t − x̂_t) / ρ_t        ρ_t = √(f(R_t) / f(W contiguous)),  f(R) = 1 + 1/|R| + (t − s̄)² / Σ(s − s̄)²
 *   z_t = e_t / max(1.4826 · med |e| over the last 8W deviations, floor)      floor 0.15 update, 0.2 loss
 *   r_t = 2 · max(0, −cosinePrev_t)
 *   score_t = max(0, z_u, z_ℓ) + r_t                 (0 for a stall)
 *
 * A stall (update 0 or ≤ 1/STALL_RATIO of its trend) scores 0 and stays out of the reference; the update after
 * k stalls may be up to (1 + k)× its trend. A second stall in a row, both above 1/DEEP_STALL_RATIO of the
 * trend, is no stall: the run moved to a lower level (an LR drop, a decayed schedule), which starts at the
 * first one (still reported as a stall). A level that began with a drop is predicted flat from its first
 * 1–2 values, so that a restart right after it is scored. An event (|z| ≥ EVENT_Z) whose next value is on
 * the same side as far starts a new level there; otherwise it was an isolated outlier. Values ≥ SUSPECT_Z away stay out
 * of the fit while they last (MAX_EXCURSION at most; one more moves the level), so a gradual rise is
 * measured against the trend before it.
 *
 * Causality: score_t depends only on checkpoints ≤ t. The kind of an upward event is settled by the next
 * checkpoint with a value (usually t + 1): `restart`/`divergence` if the move lasted, `spike` if not, `jump`
 * until then. O(n · W): a reference holds at most W points found within 4W, its medians are selections,
 * and the recent deviations are kept sorted.
 */
export interface ChangeInput {
  updateNormPerStep: readonly (number | null)[];
  cosinePrev: readonly (number | null)[];
  trainLoss?: readonly (number | null)[];
  /** W, the checkpoints a trend is fitted to (default 8, 3..256). */
  window?: number;
}

export interface ChangeScore {
  changeScore: number;
  components: { update: number; loss: number; reversal: number };
  /** An event (score ≥ EVENT_Z) or a stall; null otherwise. */
  kind: ChangeKind | null;
  /** Value ÷ its trend's prediction, exp(e_t), per series; null where not scored. */
  trendRatio: { update: number | null; loss: number | null };
}

/** A score at least this high is an event with a kind; the default `change.zThreshold` is the same. */
export const EVENT_Z = 3;
/** An update at most 1/STALL_RATIO of its trend (or exactly 0) is a stall: the weights barely moved. */
export const STALL_RATIO = 100;
/** Stalls this far below the trend (or 0) stay stalls however many follow: the weights did not move at all. */
const DEEP_STALL_RATIO = STALL_RATIO ** 2;

const MIN_REFERENCE = 3;
const MAX_WINDOW = 256;
const MAD_SCALE = 1.4826;
const UPDATE_FLOOR = 0.15;
const LOSS_FLOOR = 0.2;
/** An update at least this opposed to an update spike just before it is that spike being undone. */
const UNDO_COSINE = -0.5;
/**
 * A value this far from the trend, and those after it on the same side, stay out of the fit until one comes
 * back: a gradual rise (divergence) is measured against the trend before it, not absorbed into it.
 */
const SUSPECT_Z = 2;
const MAX_EXCURSION = 2;

/** Per checkpoint of one series: its scaled deviation from the trend (NaN: not scored) and its role. */
interface SeriesTrack {
  z: Float64Array;
  /** exp(e_t); NaN where not scored. */
  ratio: Float64Array;
  /** 1: the move lasted (the level starts here); −1: the next value returned to the trend; 0: not settled. */
  lasted: Int8Array;
  /** At least SUSPECT_Z above the trend it was judged against (the old one, for a value confirming a move). */
  up: Uint8Array;
  stall: Uint8Array;
  /** Undid the update spike just before it: neither an event nor a reversal. */
  undo: Uint8Array;
}

export function changeScores(input: ChangeInput): ChangeScore[] {
  const window = Math.min(MAX_WINDOW, Math.max(MIN_REFERENCE, input.window ?? 8));
  const n = input.updateNormPerStep.length;
  const update = trackSeries(input.updateNormPerStep, window, UPDATE_FLOOR, input.cosinePrev);
  const loss = trackSeries(input.trainLoss ?? new Array<null>(n).fill(null), window, LOSS_FLOOR, null);
  const out: ChangeScore[] = new Array(n);
  for (let t = 0; t < n; t++) {
    if (update.stall[t]) {
      out[t] = {
        changeScore: 0,
        components: { update: 0, loss: 0, reversal: 0 },
        kind: 'stall',
        trendRatio: { update: null, loss: ratioOf(loss, t) },
      };
      continue;
    }
    const zu = Number.isNaN(update.z[t]) ? 0 : Math.max(0, update.z[t]);
    const zl = Number.isNaN(loss.z[t]) ? 0 : Math.max(0, loss.z[t]);
    const cos = input.cosinePrev[t];
    const nextToStall = t > 0 && update.stall[t - 1] === 1;
    const reversal = cos != null && cos < 0 && !nextToStall && !update.undo[t] ? 2 * -cos : 0;
    const score = Math.max(zu, zl) + reversal;
    out[t] = {
      changeScore: score,
      components: { update: zu, loss: zl, reversal },
      kind: score >= EVENT_Z ? eventKind(zu, zl, reversal, update.lasted[t], loss.lasted[t], loss.up[t]) : null,
      trendRatio: { update: ratioOf(update, t), loss: ratioOf(loss, t) },
    };
  }
  return out;
}

const ratioOf = (track: SeriesTrack, t: number) => (Number.isNaN(track.ratio[t]) ? null : track.ratio[t]);

function eventKind(
  zu: number,
  zl: number,
  reversal: number,
  updateLasted: number,
  lossLasted: number,
  lossUp: number,
): ChangeKind {
  const updateEvent = zu >= EVENT_Z;
  const lossEvent = zl >= EVENT_Z;
  if ((!updateEvent && !lossEvent) || reversal > Math.max(zu, zl)) return 'reversal';
  if (lossEvent && lossLasted === 1) return 'divergence';
  // The update norm's lasting rise while the loss is rising above its trend too is the same divergence.
  if (updateEvent && updateLasted === 1) return lossUp ? 'divergence' : 'restart';
  if ((!updateEvent || updateLasted === -1) && (!lossEvent || lossLasted === -1)) return 'spike';
  return 'jump';
}

/**
 * One series through the trend model above. `cosinePrev` is given for the update series only: it marks
 * stalls, the slack after them, and spikes undone by the next update.
 */
function trackSeries(
  raw: readonly (number | null)[],
  window: number,
  floor: number,
  cosinePrev: readonly (number | null)[] | null,
): SeriesTrack {
  const n = raw.length;
  const track: SeriesTrack = {
    z: new Float64Array(n).fill(Number.NaN),
    ratio: new Float64Array(n).fill(Number.NaN),
    lasted: new Int8Array(n),
    up: new Uint8Array(n),
    stall: new Uint8Array(n),
    undo: new Uint8Array(n),
  };
  const x = new Float64Array(n).fill(Number.NaN);
  for (let t = 0; t < n; t++) {
    const v = raw[t];
    if (v != null && v > 0) x[t] = Math.log(v);
  }
  /** Stalls and isolated outliers: never part of a reference. */
  const excluded = new Uint8Array(n);
  const history = new RecentMagnitudes(8 * window);
  let levelStart = 0;
  /** The current level began with a drop: it is predicted flat until it has MIN_REFERENCE values. */
  let dropped = false;
  /** The last event not yet settled by a later value, or −1. */
  let pending = -1;
  let stallsBefore = 0;
  /** The previous checkpoint with a value, if it was a stall that may start a new low level; else −1. */
  let lowStall = -1;
  /** Where the current run of suspect values (|z| ≥ SUSPECT_Z, one sign) began, or −1: kept out of the fit. */
  let excursion = -1;
  let excursionSign = 0;
  let excursionLength = 0;
  const stallLog = Math.log(STALL_RATIO);
  const deepStallLog = Math.log(DEEP_STALL_RATIO);

  for (let t = 0; t < n; t++) {
    const v = raw[t];
    const zeroUpdate = cosinePrev !== null && v === 0;
    if (Number.isNaN(x[t]) && !zeroUpdate) continue;
    const scale = history.size >= MIN_REFERENCE ? Math.max(floor, MAD_SCALE * history.median()) : 0;
    let fit = predict(x, excluded, pending, levelStart, excursion < 0 ? t : excursion, t, window, dropped);
    if (cosinePrev !== null && (zeroUpdate || (fit.level !== null && x[t] < fit.level - stallLog))) {
      const deep = zeroUpdate || x[t] < (fit.level ?? 0) - deepStallLog;
      if (lowStall < 0 || deep) {
        track.stall[t] = 1;
        excluded[t] = 1;
        stallsBefore++;
        lowStall = deep ? -1 : t;
        continue;
      }
      // A second value far below the trend in a row: the run moved to a lower level (a learning-rate drop,
      // a decayed schedule) that starts at the stall before; later values are judged against it.
      levelStart = lowStall;
      dropped = true;
      excluded[lowStall] = 0;
      excursion = -1;
      stallsBefore = 0;
      fit = predict(x, excluded, pending, levelStart, t, t, window, dropped);
    }
    lowStall = -1;
    let e = fit.prediction === null ? Number.NaN : x[t] - fit.prediction;
    // The update after k stalls may carry their intervals' training too: up to (1 + k)× its trend.
    if (stallsBefore > 0 && e > 0) e = Math.max(0, e - Math.log(1 + stallsBefore));
    stallsBefore = 0;
    // Deviations are put on the scale of a full contiguous reference (the one the history mostly holds).
    if (!Number.isNaN(e)) e /= fit.spread;
    const z = scale > 0 && !Number.isNaN(e) ? e / scale : Number.NaN;
    if (z >= SUSPECT_Z) track.up[t] = 1;

    if (pending >= 0) {
      const p = pending;
      pending = -1;
      const cos = cosinePrev?.[t];
      const undone = cos != null && cos <= UNDO_COSINE && track.z[p] > 0 && x[t] <= x[p] + Math.LN2;
      if (cosinePrev !== null && undone) {
        track.lasted[p] = -1;
        track.undo[t] = 1;
        excluded[p] = 1;
        excluded[t] = 1;
        continue;
      }
      if (!Number.isNaN(z) && Math.abs(z) >= EVENT_Z && Math.sign(z) === Math.sign(track.z[p])) {
        track.lasted[p] = 1;
        levelStart = p;
        dropped = z < 0;
        excursion = -1;
        continue;
      }
      track.lasted[p] = -1;
      excluded[p] = 1;
    }
    if (Number.isNaN(e)) continue;
    history.push(Math.abs(e));
    if (Number.isNaN(z)) continue;
    track.z[t] = z;
    track.ratio[t] = Math.exp(e * fit.spread);
    if (Math.abs(z) >= EVENT_Z) pending = t;
    if (Math.abs(z) < SUSPECT_Z) excursion = -1;
    else if (excursion < 0 || Math.sign(z) !== excursionSign) {
      excursion = t;
      excursionSign = Math.sign(z);
      excursionLength = 1;
    } else if (++excursionLength > MAX_EXCURSION) {
      // Suspect values on one side for longer than an outlier lasts: the level moved where they began.
      levelStart = excursion;
      dropped = excursionSign < 0;
      excursion = -1;
    }
  }
  return track;
}

const refX = new Float64Array(MAX_WINDOW);
const refY = new Float64Array(MAX_WINDOW);
const scratch = new Float64Array(MAX_WINDOW);

/**
 * The resistant-line prediction at t from the reference (null with fewer than MIN_REFERENCE points), and
 * the level a stall is judged against (the prediction, else the median of the 1–2 points there are).
 */
function predict(
  x: Float64Array,
  excluded: Uint8Array,
  pending: number,
  levelStart: number,
  before: number,
  t: number,
  window: number,
  flat: boolean,
): { prediction: number | null; level: number | null; spread: number } {
  let k = 0;
  for (let s = before - 1; s >= Math.max(levelStart, t - 4 * window) && k < window; s--) {
    if (excluded[s] || s === pending || Number.isNaN(x[s])) continue;
    refX[k] = s;
    refY[k] = x[s];
    k++;
  }
  if (k === 0) return { prediction: null, level: null, spread: 1 };
  const full = 1 + 1 / window + (3 * (window + 1)) / (window * (window - 1));
  if (k < MIN_REFERENCE) {
    for (let i = 0; i < k; i++) scratch[i] = refY[i];
    const level = median(scratch, k);
    // A level that began with a drop is predicted flat from its first 1–2 values, so that a rise right after
    // it is scored against the low level; the error of a mean of k values is √(1 + 1/k).
    if (flat) return { prediction: level, level, spread: Math.sqrt(Math.max(1, (1 + 1 / k) / full)) };
    return { prediction: null, level, spread: 1 };
  }
  // refX holds decreasing indices: the first third is the newest.
  const third = Math.max(1, Math.round(k / 3));
  for (let i = 0; i < third; i++) scratch[i] = refY[i];
  const yRight = median(scratch, third);
  for (let i = 0; i < third; i++) scratch[i] = refX[i];
  const xRight = median(scratch, third);
  for (let i = 0; i < third; i++) scratch[i] = refY[k - 1 - i];
  const yLeft = median(scratch, third);
  for (let i = 0; i < third; i++) scratch[i] = refX[k - 1 - i];
  const xLeft = median(scratch, third);
  const slope = (yRight - yLeft) / (xRight - xLeft);
  for (let i = 0; i < k; i++) scratch[i] = refY[i] - slope * refX[i];
  const prediction = median(scratch, k) + slope * t;
  // The standard error of a straight-line prediction at t, relative to that of W contiguous points just
  // before t: √((1 + 1/k + (t − x̄)²/Sxx) / (1 + 1/W + ((W + 1)/2)² / (W(W² − 1)/12))).
  let mean = 0;
  for (let i = 0; i < k; i++) mean += refX[i];
  mean /= k;
  let sxx = 0;
  for (let i = 0; i < k; i++) sxx += (refX[i] - mean) ** 2;
  const spread = Math.sqrt(Math.max(1, (1 + 1 / k + (t - mean) ** 2 / sxx) / full));
  return { prediction, level: prediction, spread };
}

/** The last `capacity` values pushed, kept sorted as well so that their median costs O(1). */
class RecentMagnitudes {
  private readonly ring: Float64Array;
  private readonly sorted: Float64Array;
  private next = 0;
  size = 0;

  constructor(capacity: number) {
    this.ring = new Float64Array(capacity);
    this.sorted = new Float64Array(capacity);
  }

  push(v: number): void {
    const { ring, sorted } = this;
    if (this.size === ring.length) {
      const at = this.find(ring[this.next]);
      sorted.copyWithin(at, at + 1, this.size);
      this.size--;
    }
    const at = this.find(v);
    sorted.copyWithin(at + 1, at, this.size);
    sorted[at] = v;
    this.size++;
    ring[this.next] = v;
    this.next = (this.next + 1) % ring.length;
  }

  median(): number {
    const h = this.size >> 1;
    return this.size % 2 ? this.sorted[h] : (this.sorted[h - 1] + this.sorted[h]) / 2;
  }

  /** The first position whose value is not below v. */
  private find(v: number): number {
    let lo = 0;
    let hi = this.size;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.sorted[mid] < v) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}

/** Median of values[0, m) by selection in place (Hoare's quickselect, middle pivot): O(m) expected. */
function median(values: Float64Array, m: number): number {
  const mid = m >> 1;
  const upper = select(values, m, mid);
  if (m % 2) return upper;
  let lower = values[0];
  for (let i = 1; i < mid; i++) if (values[i] > lower) lower = values[i];
  return (lower + upper) / 2;
}

/** The k-th smallest of values[0, m); afterwards values[0, k) hold the k smaller ones. */
function select(values: Float64Array, m: number, k: number): number {
  let lo = 0;
  let hi = m - 1;
  while (lo < hi) {
    const pivot = values[(lo + hi) >> 1];
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (values[i] < pivot) i++;
      while (values[j] > pivot) j--;
      if (i <= j) {
        const tmp = values[i];
        values[i] = values[j];
        values[j] = tmp;
        i++;
        j--;
      }
    }
    if (k <= j) hi = j;
    else if (k >= i) lo = i;
    else break;
  }
  return values[k];
}
