/**
 * High-change score of each checkpoint (docs/architecture.md §5), against a trailing window of the W checkpoints before
 * it, so that an event is judged by what training was doing just before (a learning-rate restart looks
 * ordinary against the whole run and extraordinary against its recent past):
 *
 *   u_t  = log(updateNormPerStep_t) − log(updateNormPerStep_{t−1})   (the step's change in log update size)
 *   z_u  = (u_t − median(u_{t−W..t−1})) / max(1.4826 · MAD(u_{t−W..t−1}), 0.15)
 *   ℓ_t  = log(trainLoss_t) − log(trainLoss_{t−1})          (when the loss is known at both)
 *   z_ℓ  = (ℓ_t − median(ℓ window)) / max(1.4826 · MAD(ℓ window), 0.2)
 *   r_t  = 2 · max(0, −cosinePrev_t)                        (the update turned back on the previous one)
 *   score_t = max(0, z_u, z_ℓ) + r_t
 *
 * Both series are first differences of logs, so a steady decay (a learning-rate schedule, a falling loss)
 * is the baseline and only departures from it score. Only increases count: a sudden drop of the update
 * norm (a learning-rate decay step) or of the loss is training settling, not an event worth a checkpoint.
 * The MAD floors (0.15 and 0.2 in log units) keep a smooth run's wiggles and the batch-to-batch noise of
 * the training loss from scoring high. Fewer than MIN_HISTORY values in a window give that term 0.
 */
export interface ChangeInput {
  updateNormPerStep: readonly (number | null)[];
  cosinePrev: readonly (number | null)[];
  trainLoss?: readonly (number | null)[];
  window?: number;
}

export interface ChangeScore {
  changeScore: number;
  components: { update: number; loss: number; reversal: number };
}

const MIN_HISTORY = 3;
const MAD_SCALE = 1.4826;

export function changeScores(input: ChangeInput): ChangeScore[] {
  const window = input.window ?? 8;
  const n = input.updateNormPerStep.length;
  const logUpdate = input.updateNormPerStep.map((u) => (u !== null && u > 0 ? Math.log(u) : null));
  const updateJump = logUpdate.map((u, t) =>
    u !== null && t > 0 && logUpdate[t - 1] != null ? u - logUpdate[t - 1]! : null,
  );
  const loss = input.trainLoss;
  const logLossJump = Array.from({ length: n }, (_, t) => {
    const [a, b] = [loss?.[t - 1], loss?.[t]];
    return a != null && b != null && a > 0 && b > 0 ? Math.log(b) - Math.log(a) : null;
  });
  return Array.from({ length: n }, (_, t) => {
    const update = Math.max(0, robustZ(updateJump, t, window, 0.15));
    const lossZ = Math.max(0, robustZ(logLossJump, t, window, 0.2));
    const cos = input.cosinePrev[t];
    const reversal = cos !== null && cos < 0 ? 2 * -cos : 0;
    return { changeScore: Math.max(update, lossZ) + reversal, components: { update, loss: lossZ, reversal } };
  });
}

const windowValues: number[] = [];
const deviations: number[] = [];

function robustZ(series: readonly (number | null)[], t: number, window: number, floor: number): number {
  const x = series[t];
  if (x === null) return 0;
  windowValues.length = 0;
  for (let i = Math.max(0, t - window); i < t; i++) {
    const v = series[i];
    if (v !== null) windowValues.push(v);
  }
  if (windowValues.length < MIN_HISTORY) return 0;
  const med = median(windowValues);
  deviations.length = 0;
  for (const v of windowValues) deviations.push(Math.abs(v - med));
  return (x - med) / Math.max(MAD_SCALE * median(deviations), floor);
}

/** Median of a small array; sorts it in place (insertion sort: windows are a handful of values). */
function median(values: number[]): number {
  for (let i = 1; i < values.length; i++) {
    const v = values[i];
    let j = i - 1;
    for (; j >= 0 && values[j] > v; j--) values[j + 1] = values[j];
    values[j + 1] = v;
  }
  const m = values.length >> 1;
  return values.length % 2 ? values[m] : (values[m - 1] + values[m]) / 2;
}
