import type { TensorEntry } from '../model/records.js';
import { AppError, type ErrorCode, type ErrorDetails } from '../errors.js';
import type { CheckpointFormat } from '@trajgate/sdk/wire/formats';
import { CheckpointAnalysis, type AnalysedCheckpoint } from './checkpoint-analysis.js';
import type { CheckpointDecoder, DecoderLimits } from './decoder.js';
import { createDecoder } from './sniff.js';

/** What the analysis of one body needs to know before its first byte. */
export interface BodyAnalysisStart {
  format: CheckpointFormat;
  step: number;
  /** The run's reference tensor table, or null when any is accepted. */
  reference: TensorEntry[] | null;
  limits: DecoderLimits;
  /** The declared Content-Length, checked against the length the checkpoint header declares. */
  contentLength?: number;
}

export interface BodyAnalysisResult {
  analysed: AnalysedCheckpoint;
}

/**
 * What an upload computes from its bytes besides the SHA-256, in one pass: the format decoder feeding the
 * checkpoint analysis (statistics, sketches, validation). Runs on whichever thread it is created on: the
 * request's thread for small bodies, an analysis worker (analysis-thread.ts) for large ones. Throws the
 * AppErrors the decoder and the checks raise.
 */
export class BodyAnalysis {
  private readonly analysis: CheckpointAnalysis;
  private readonly decoder: CheckpointDecoder;

  constructor(private readonly start: BodyAnalysisStart) {
    this.analysis = new CheckpointAnalysis(start.reference);
    this.decoder = createDecoder(start.format, this.analysis, start.limits);
  }

  update(bytes: Uint8Array): void {
    this.decoder.write(bytes);
    checkDeclaredLength(this.decoder.expectedLength, this.start.contentLength);
  }

  /** The body has ended: the decoder must have seen a whole checkpoint. */
  finish(): BodyAnalysisResult {
    this.decoder.end();
    return { analysed: this.analysis.finish(this.start.step) };
  }
}

function checkDeclaredLength(expected: number | null, contentLength: number | undefined): void {
  if (expected !== null && contentLength !== undefined && expected !== contentLength) {
    throw new AppError(
      'length_mismatch',
      `Content-Length is ${contentLength} but the checkpoint header declares ${expected} bytes`,
      {
        contentLength,
        declared: expected,
      },
    );
  }
}

/** An error as it crosses a thread boundary (structured clone drops the AppError prototype). */
export interface SerializedError {
  code: ErrorCode;
  message: string;
  details?: ErrorDetails;
}

export function serializeError(err: unknown): SerializedError {
  if (err instanceof AppError) return { code: err.code, message: err.message, details: err.details };
  return {
    code: 'internal',
    message: `checkpoint analysis failed: ${err instanceof Error ? err.message : String(err)}`,
  };
}

export function deserializeError(err: SerializedError): AppError {
  return new AppError(err.code, err.message, err.details);
}
