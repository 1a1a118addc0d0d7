import type { TensorEntry } from '../model/records.js';
import { AppError } from '../errors.js';
import { CheckpointAccumulator } from '../trajectory/accumulator.js';
import type { CheckpointSummary, TensorStats } from '../model/summary.js';
import type { CheckpointLayout, TensorVisitor } from './decoder.js';

export interface AnalysedCheckpoint {
  layout: CheckpointLayout;
  /** The tensor table with each tensor's exact statistics. */
  tensors: TensorEntry[];
  summary: CheckpointSummary;
}

/**
 * The decoder's visitor during an upload: checks the tensor table against the run's reference checkpoint
 * as soon as the header is read, and feeds every data slice to the trajectory accumulator, so statistics
 * and sketches come out of the same single pass over the body.
 */
export class CheckpointAnalysis implements TensorVisitor {
  private layout: CheckpointLayout | null = null;
  private readonly accumulator = new CheckpointAccumulator();

  /**
   * @param reference the tensor table every checkpoint of the run must match (the run's first
   *   checkpoint), or null when any table is accepted.
   */
  constructor(private readonly reference: readonly TensorEntry[] | null) {}

  onHeader(layout: CheckpointLayout): void {
    if (this.reference) checkSameTensors(this.reference, layout);
    this.layout = layout;
    this.accumulator.begin(layout.tensors);
  }

  onData(index: number, byteOffset: number, bytes: Uint8Array): void {
    this.accumulator.update(index, byteOffset, bytes);
  }

  /** After the decoder's end(): statistics, the summary, and the NaN/Inf check. */
  finish(step: number): AnalysedCheckpoint {
    const layout = this.layout;
    if (!layout) throw new AppError('internal', 'the decoder finished without reporting a header');
    const summary = this.accumulator.finish(step);
    const tensors = summary.tensors.map(tensorEntryOf);
    const nonFinite = tensors.filter((t) => t.nanCount + t.infCount > 0);
    if (nonFinite.length > 0) {
      const listed = nonFinite.slice(0, 5).map((t) => `${t.name} (${t.nanCount} NaN, ${t.infCount} Inf)`);
      throw new AppError(
        'non_finite_weights',
        `the checkpoint holds non-finite weights in ${nonFinite.length} tensor(s): ${listed.join(', ')}${nonFinite.length > 5 ? ', ...' : ''}`,
        { tensors: nonFinite.map(({ name, nanCount, infCount }) => ({ name, nanCount, infCount })) },
      );
    }
    return { layout, tensors, summary };
  }
}

/** A tensor's statistics as the checkpoint record lists them (without the summary's extra fields). */
export function tensorEntryOf({
  name,
  dtype,
  shape,
  norm,
  mean,
  maxAbs,
  nanCount,
  infCount,
}: TensorStats): TensorEntry {
  return { name, dtype, shape, norm, mean, maxAbs, nanCount, infCount };
}

function checkSameTensors(reference: readonly TensorEntry[], layout: CheckpointLayout): void {
  const expected = new Map(reference.map((t) => [t.name, t.shape]));
  const problems: string[] = [];
  for (const t of layout.tensors) {
    const shape = expected.get(t.name);
    if (!shape) problems.push(`unexpected tensor '${t.name}'`);
    else if (shape.length !== t.shape.length || shape.some((d, i) => d !== t.shape[i])) {
      problems.push(`'${t.name}' has shape [${t.shape}], the run's first checkpoint has [${shape}]`);
    }
    expected.delete(t.name);
  }
  for (const name of expected.keys()) problems.push(`missing tensor '${name}'`);
  if (problems.length > 0) {
    throw new AppError(
      'shape_mismatch',
      `the checkpoint's tensors differ from the run's first checkpoint: ${problems.slice(0, 5).join('; ')}${problems.length > 5 ? '; ...' : ''}. Create the run with allowShapeChange to accept this.`,
      { problems: problems.slice(0, 100) },
    );
  }
}
