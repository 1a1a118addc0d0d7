/**
 * Property-based fuzzing of every input parser (issue 11), shared by `test/fuzz.test.ts` (about 10,000 cases)
 * and `scripts/fuzz.ts` (100,000 and more). Each target is a fast-check property over generated inputs,
 * driven through the real app (a test gateway on a local socket, requests by supertest, or by `node:http`
 * where the request needs exact control: no Content-Type, a body streamed in chunks); the checkpoint decoders
 * are also called directly, which is much faster, with a smaller number of the same cases sent over HTTP.
 *
 * Invariants checked on every case (docs/architecture.md §3, §8):
 * - never a 5xx, and no exception other than an `AppError` out of a decoder;
 * - every refusal is `{"error": {"code", "message", "details"?}}` with a code of the catalogue and its 4xx status;
 * - nothing is stored on refusal: no run, checkpoint, policy or metric row, no blob, no staged file;
 * - what is accepted is stored exactly: a checkpoint's sha256, bytes and tensor table (checked against a direct
 *   decode of the same body), its content; metric points, policies and run policies as sent;
 * - inputs valid by construction are accepted, inputs invalid by construction are refused;
 * - a decoder accepts or refuses a body whatever its chunking, with the same layout and bytes or the same code
 *   (a body both malformed and over the header limit may be refused for either, depending on what had arrived).
 * Every refusal is counted by status and by code; nothing else is assumed about which code a bad input gets.
 * A broken invariant throws an `InvariantViolation`; fast-check then shrinks the case to a minimal one.
 */
import { createHash } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { isDeepStrictEqual } from 'node:util';
import fc from 'fast-check';
import { pack, unpack } from 'msgpackr';
import request from 'supertest';
import { ERROR_CODES, ERROR_STATUS, type ErrorCode } from '@trajgate/sdk/contract';
import { DTYPES, DTYPE_SIZES, elementCount, isFloatDtype, type Dtype } from '@trajgate/sdk/wire/dtypes';
import { MEDIA_TYPES, SHA256_HEADER } from '@trajgate/sdk/wire/formats';
import { NATIVE_FORMAT_NAME, encodeNative, encodeNativeHeader } from '@trajgate/sdk/wire/native-format';
import { encodeSafetensors, type TensorData } from '@trajgate/sdk/wire/safetensors';
import { isAppError } from '../../src/errors.js';
import type { CheckpointLayout, DecoderLimits, TensorVisitor } from '../../src/ingest/decoder.js';
import { createNativeDecoder } from '../../src/ingest/native-decoder.js';
import { createSafetensorsDecoder } from '../../src/ingest/safetensors-decoder.js';
import { sniffFormat } from '../../src/ingest/sniff.js';
import { createTestGateway, type TestGateway } from '../../test/helpers/gateway.js';
import { mulberry32 } from './mnist-data.js';

// ---------------------------------------------------------------------------------------------------------------
// The harness: targets, tallies, violations
// ---------------------------------------------------------------------------------------------------------------

/** The seed of the committed test and the script's default. */
export const FUZZ_SEED = 1_100_003;
/** Cases in the committed test, over all targets. */
export const TEST_CASES = 10_000;

/** A broken invariant (as opposed to a refusal, which is an expected outcome). */
export class InvariantViolation extends Error {
  override name = 'InvariantViolation';
}

function violated(message: string): never {
  throw new InvariantViolation(message);
}

/** What one case ended as: an HTTP status (or `ok` for a direct decode) and the error code of a refusal. */
export interface Outcome {
  status: string;
  code?: string;
}

export interface TargetResult {
  name: string;
  cases: number;
  ms: number;
  byStatus: Map<string, number>;
  byCode: Map<string, number>;
  /** Answers with a 5xx status seen (each is also a failure). */
  serverErrors: number;
  /** fast-check's report of the shrunk counterexample, or null when every case kept the invariants. */
  failure: string | null;
}

export interface FuzzTarget {
  name: string;
  /** Share of the total number of cases. */
  weight: number;
  run(numRuns: number, seed: number): Promise<TargetResult>;
}

class Tally {
  cases = 0;
  serverErrors = 0;
  readonly byStatus = new Map<string, number>();
  readonly byCode = new Map<string, number>();
  add(outcome: Outcome): void {
    this.cases++;
    this.byStatus.set(outcome.status, (this.byStatus.get(outcome.status) ?? 0) + 1);
    if (outcome.code) this.byCode.set(outcome.code, (this.byCode.get(outcome.code) ?? 0) + 1);
  }
}

/** Runs one property; counts the outcomes of the cases before a first failure (not the shrinking runs). */
async function fuzz<C, E>(opts: {
  name: string;
  numRuns: number;
  seed: number;
  open: () => Promise<E>;
  close: (env: E) => Promise<void>;
  arbitrary: fc.Arbitrary<C>;
  check: (env: E, c: C) => Promise<Outcome>;
  /** Invariants over everything stored, once all cases ran. */
  sweep?: (env: E) => Promise<void>;
}): Promise<TargetResult> {
  const started = performance.now();
  const env = await opts.open();
  const tally = new Tally();
  let counting = true;
  let failure: string | null = null;
  try {
    const property = fc.asyncProperty(opts.arbitrary, async (c) => {
      try {
        const outcome = await opts.check(env, c);
        if (counting) tally.add(outcome);
      } catch (err) {
        if (counting && err instanceof ServerError) tally.serverErrors++;
        counting = false;
        throw err;
      }
    });
    const details = await fc.check(property, { seed: opts.seed, numRuns: opts.numRuns });
    if (details.failed) {
      const error = details.errorInstance;
      const why = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
      failure = `${fc.defaultReportMessage(details) ?? 'the property failed'}\nBroken: ${why}`;
    }
    if (!details.failed && opts.sweep) {
      try {
        await opts.sweep(env);
      } catch (err) {
        failure = `after all cases: ${err instanceof Error ? err.message : String(err)}`;
      }
    }
  } finally {
    await opts.close(env);
  }
  return {
    name: opts.name,
    cases: tally.cases,
    ms: performance.now() - started,
    byStatus: tally.byStatus,
    byCode: tally.byCode,
    serverErrors: tally.serverErrors,
    failure,
  };
}

/** Splits `total` cases over the targets by weight (each gets at least one). */
export function planCases(total: number, targets: readonly FuzzTarget[] = TARGETS): Map<string, number> {
  const weights = targets.reduce((sum, t) => sum + t.weight, 0);
  const plan = new Map<string, number>();
  for (const t of targets) plan.set(t.name, Math.max(1, Math.round((total * t.weight) / weights)));
  return plan;
}

/** Each target draws from its own seed, derived from the run's seed and its name. */
export function targetSeed(seed: number, name: string): number {
  let h = seed | 0;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

const sortedEntries = (m: Map<string, number>) => [...m].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));

/** Lines describing a target's result: counts by status, by error code, and the failure if any. */
export function describeResult(r: TargetResult): string[] {
  const status = sortedEntries(r.byStatus)
    .map(([s, n]) => `${s}: ${n}`)
    .join(', ');
  const codes = sortedEntries(r.byCode)
    .map(([c, n]) => `${c}: ${n}`)
    .join(', ');
  const lines = [
    `${r.name}: ${r.cases} cases in ${(r.ms / 1000).toFixed(1)} s; ` +
      `by status: ${status || 'none'}; 5xx: ${r.serverErrors}`,
    `${r.name}: by error code: ${codes || 'none'}`,
  ];
  if (r.failure) lines.push(`${r.name}: INVARIANT BROKEN:\n${shortFailure(r.failure)}`);
  return lines;
}

/** fast-check's report of a broken invariant, cut to a readable length. */
export function shortFailure(failure: string): string {
  const text = failure.replace(/\n*Hint: Enable verbose mode[^\n]*\n*/, '\n');
  return text.length > 6000 ? `${text.slice(0, 3000)}\n…\n${text.slice(-3000)}` : text;
}

// ---------------------------------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------------------------------

/** Seeded bytes for tensor data and large batches: the harness's mulberry32. */
const prng = mulberry32;

/** Defines an own enumerable property, so that a key named `__proto__` is a key like any other. */
function setOwn(target: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
}

function ownObject(entries: readonly (readonly [string, unknown])[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of entries) setOwn(out, k, v);
  return out;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** A JSON round trip: what a value is once sent as JSON (undefined keys gone, -0 is 0, NaN is null). */
function viaJson(value: unknown): unknown {
  const text = JSON.stringify(value);
  return text === undefined ? undefined : JSON.parse(text);
}

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

function hexPreview(bytes: Uint8Array, max = 160): string {
  const hex = Buffer.from(bytes.subarray(0, max)).toString('hex');
  return bytes.byteLength > max ? `${hex}… (${bytes.byteLength} bytes)` : `${hex} (${bytes.byteLength} bytes)`;
}

function show(value: unknown, max = 400): string {
  let text: string;
  try {
    text = JSON.stringify(value) ?? String(value);
  } catch {
    text = String(value);
  }
  return text.length > max ? `${text.slice(0, max)}…` : text;
}

/** §8: run ids (and, without the `..` rule, policy names). */
const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const isValidRunId = (s: string) => ID_PATTERN.test(s) && !s.includes('..');
const isValidStep = (s: string) => /^(0|[1-9]\d*)$/.test(s) && Number.isSafeInteger(Number(s));
const isValidPolicyName = (s: string) => ID_PATTERN.test(s);
const isValidTokenId = (s: string) => /^tok_[0-9a-f]{16}$/.test(s);

/** Keys that name things on Object.prototype, and the one key a plain assignment cannot create. */
const SPECIAL_KEYS = ['__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty', 'valueOf', '__metadata__'];

// ---------------------------------------------------------------------------------------------------------------
// The error contract
// ---------------------------------------------------------------------------------------------------------------

class ServerError extends InvariantViolation {}

const CODES: ReadonlySet<string> = new Set(ERROR_CODES);

function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === 'string' && CODES.has(code);
}

interface Answer {
  status: number;
  contentType: string;
  /** The parsed JSON body when the answer is JSON, else undefined. */
  json: unknown;
  text: string;
}

/**
 * Checks an HTTP answer against the error contract and returns its outcome: a 5xx is a violation; a 4xx must
 * be JSON `{"error": {"code", "message", "details"?}}` with a catalogue code whose status is the answer's.
 */
function outcomeOf(answer: Answer, what: () => string): Outcome {
  const { status } = answer;
  if (status >= 500) throw new ServerError(`${what()}: answered ${status}: ${answer.text.slice(0, 600)}`);
  if (status < 400) return { status: String(status) };
  const fail = (why: string): never => violated(`${what()}: refusal ${status} ${why}: ${answer.text.slice(0, 600)}`);
  if (!answer.contentType.startsWith('application/json')) fail(`is not JSON (content-type '${answer.contentType}')`);
  const body = answer.json;
  if (!isRecord(body) || Object.keys(body).length !== 1 || !isRecord(body.error)) fail('is not {"error": {...}}');
  const error = (body as { error: Record<string, unknown> }).error;
  const extra = Object.keys(error).filter((k) => k !== 'code' && k !== 'message' && k !== 'details');
  if (extra.length > 0) fail(`has unexpected keys ${extra.join(', ')}`);
  if (!isErrorCode(error.code)) fail(`has a code outside the catalogue: ${show(error.code)}`);
  const code = error.code as ErrorCode;
  if (typeof error.message !== 'string' || error.message.length === 0) fail('has no message');
  if (error.details !== undefined && !isRecord(error.details)) fail('has details that are not an object');
  if (ERROR_STATUS[code] !== status) fail(`has code ${code}, whose status is ${ERROR_STATUS[code]}`);
  return { status: String(status), code };
}

// ---------------------------------------------------------------------------------------------------------------
// A gateway on a local socket
// ---------------------------------------------------------------------------------------------------------------

/** Limits of every fuzzed gateway (the direct decoder calls use the same). */
const GATEWAY_ENV: Record<string, string> = {
  TRAJGATE_RATE_LIMIT_RPS: '0',
  TRAJGATE_MAX_RUNS_PER_SCOPE: '1000000000',
  TRAJGATE_MAX_HEADER_KB: '16',
  TRAJGATE_MAX_TENSORS: '64',
  TRAJGATE_MAX_POINTS_PER_BATCH: '4000',
};
const MAX_POINTS_PER_BATCH = 4000;
const MAX_EXTRA_KEYS = 64;
const LIMITS: DecoderLimits = { maxHeaderBytes: 16 * 1024, maxTensors: 64 };

interface HttpEnv {
  gw: TestGateway;
  url: string;
  port: number;
  agent: http.Agent;
  server: http.Server;
  /** A counter for fresh run ids, policy names and steps. */
  next: number;
}

async function openHttp(): Promise<HttpEnv> {
  const gw = await createTestGateway(GATEWAY_ENV);
  const server = http.createServer(gw.app);
  server.listen(0, '127.0.0.1');
  await new Promise<void>((resolve) => server.once('listening', () => resolve()));
  const { port } = server.address() as AddressInfo;
  return {
    gw,
    port,
    url: `http://127.0.0.1:${port}`,
    agent: new http.Agent({ keepAlive: true, maxSockets: 1 }),
    server,
    next: 0,
  };
}

async function closeHttp(env: HttpEnv): Promise<void> {
  env.agent.destroy();
  await new Promise<void>((resolve) => env.server.close(() => resolve()));
  await env.gw.close();
}

function fresh(env: HttpEnv, prefix: string): string {
  return `${prefix}-${(env.next++).toString(36)}`;
}

/** A supertest request to the gateway over the keep-alive agent. */
function call(env: HttpEnv, method: 'get' | 'put' | 'post' | 'delete', urlPath: string): request.Test {
  return request(env.url)[method](urlPath).agent(env.agent);
}

async function answerOf(test: request.Test): Promise<Answer> {
  const res = await test;
  const json: unknown = res.type === 'application/json' ? res.body : undefined;
  return { status: res.status, contentType: String(res.get('content-type') ?? ''), json, text: res.text ?? '' };
}

/**
 * A request through `node:http` with exactly the given headers; a body written in one piece with its
 * Content-Length, or in `chunks` (sizes, cycled) with chunked transfer encoding, a turn of the event loop apart.
 */
function rawRequest(
  env: HttpEnv,
  method: string,
  urlPath: string,
  headers: Record<string, string>,
  body: Uint8Array | null,
  chunks: readonly number[] | null = null,
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const all: Record<string, string> = { ...headers };
    if (body !== null && chunks === null) all['content-length'] = String(body.byteLength);
    if (body !== null && chunks !== null) all['transfer-encoding'] = 'chunked';
    let answered = false;
    const req = http.request(
      { host: '127.0.0.1', port: env.port, method, path: urlPath, headers: all, agent: env.agent },
      (res) => {
        answered = true;
        const pieces: Buffer[] = [];
        res.on('data', (c: Buffer) => pieces.push(c));
        res.on('error', reject);
        res.on('end', () => {
          const text = Buffer.concat(pieces).toString('utf8');
          const contentType = String(res.headers['content-type'] ?? '');
          let json: unknown;
          if (contentType.startsWith('application/json')) {
            try {
              json = JSON.parse(text);
            } catch {
              json = undefined;
            }
          }
          resolve({ status: res.statusCode ?? 0, contentType, json, text });
        });
      },
    );
    req.on('error', (err) => {
      if (!answered) reject(new InvariantViolation(`${method} ${urlPath}: no answer, the connection failed: ${err}`));
    });
    if (body === null) {
      req.end();
      return;
    }
    if (chunks === null) {
      req.end(body);
      return;
    }
    void (async () => {
      let pos = 0;
      for (let i = 0; pos < body.byteLength; i++) {
        const size = chunks[i % chunks.length];
        req.write(body.subarray(pos, pos + size));
        pos += size;
        await nextTurn();
      }
      req.end();
    })();
  });
}

async function stagedFiles(env: HttpEnv): Promise<string[]> {
  try {
    return await readdir(path.join(env.gw.dataDir, 'blobs', '.staging'));
  } catch {
    return [];
  }
}

async function blobsUnder(env: HttpEnv, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  for await (const blob of env.gw.context.blobs.list(prefix)) keys.push(blob.key);
  return keys;
}

async function assertNothingStaged(env: HttpEnv, what: () => string): Promise<void> {
  const staged = await stagedFiles(env);
  if (staged.length > 0) violated(`${what()}: staged files left behind: ${staged.join(', ')}`);
}

/** After all cases: every stored run id and policy name is valid, every blob key sits under a valid run. */
async function sweepStore(env: HttpEnv): Promise<void> {
  const { catalog } = env.gw.context;
  let after: string | undefined;
  for (;;) {
    const page = await catalog.listRuns({ limit: 1000, after, scope: ['*'] });
    for (const run of page) if (!isValidRunId(run.id)) violated(`a run with an invalid id was stored: ${show(run.id)}`);
    if (page.length < 1000) break;
    after = page[page.length - 1].id;
  }
  for (const p of await catalog.listPolicies()) {
    if (!isValidPolicyName(p.name)) violated(`a policy with an invalid name was stored: ${show(p.name)}`);
  }
  for (const key of await blobsUnder(env, '')) {
    // {step:010d}: at least 10 digits (a step up to 2^53 - 1 takes 16).
    const m = /^runs\/([^/]+)\/checkpoints\/\d{10,16}-[0-9a-z]+\.(safetensors|tgckpt|json)$/.exec(key);
    if (!m || !isValidRunId(m[1])) violated(`a blob key outside the layout: ${show(key)}`);
  }
  await assertNothingStaged(env, () => 'after all cases');
}

// ---------------------------------------------------------------------------------------------------------------
// Checkpoints: generators
// ---------------------------------------------------------------------------------------------------------------

type Format = 'safetensors' | 'native';

interface TensorSpec {
  name: string;
  dtype: Dtype;
  shape: number[];
}

interface CheckpointSpec {
  tensors: TensorSpec[];
  metadata: [string, string][] | null;
  dataSeed: number;
  /** Float elements made finite (a bit of the exponent cleared), else each float tensor starts with a NaN. */
  finite: boolean;
}

type ByteMutation =
  | { op: 'flip'; at: number; bit: number }
  | { op: 'truncate'; at: number }
  | { op: 'append'; bytes: Uint8Array }
  | { op: 'splice'; at: number; remove: number; insert: Uint8Array };

/** Edits of a safetensors header (its JSON object, its text, its bytes or its length prefix). */
type StEdit =
  | { op: 'entry'; t: number; key: string; value: unknown }
  | { op: 'dropKey'; t: number; key: string }
  | { op: 'shift'; t: number; begin: number; end: number }
  | { op: 'swapOffsets'; t: number; u: number }
  | { op: 'top'; key: string; value: unknown }
  | { op: 'dropTop'; t: number }
  | { op: 'metadata'; value: unknown }
  | { op: 'nest'; where: 'top' | 'metadata' | 'entry' | 'shape'; depth: number; kind: 'array' | 'object' }
  | { op: 'duplicate'; where: 'top' | 'entry' | 'metadata'; t: number; same: boolean }
  | { op: 'number'; t: number; field: 'shape' | 'data_offsets'; text: string }
  | { op: 'pad'; text: string }
  | { op: 'text'; at: number; remove: number; insert: string }
  | { op: 'replace'; text: string }
  | { op: 'headerBytes'; at: number; insert: Uint8Array }
  | { op: 'prefix'; delta: number }
  | { op: 'prefixValue'; low: number; high: number };

/** A msgpack value to encode byte for byte, including what msgpackr would never write. */
type Mp =
  | { t: 'map'; entries: [Mp, Mp][]; width?: 'fix' | '16' | '32' }
  | { t: 'arr'; items: Mp[] }
  | { t: 'str'; v: string }
  | { t: 'int'; v: number; enc?: IntEncoding }
  | { t: 'f32'; v: number }
  | { t: 'f64'; v: number }
  | { t: 'bin'; v: Uint8Array }
  | { t: 'nil' }
  | { t: 'bool'; v: boolean }
  | { t: 'ext'; type: number; data: Uint8Array }
  | { t: 'raw'; bytes: Uint8Array };

type IntEncoding = 'u8' | 'u16' | 'u32' | 'u64' | 'i8' | 'i16' | 'i32' | 'i64';

type MapWhere = 'top' | 'tensor' | 'metadata';

/** Edits of a native checkpoint: its header map (as msgpack values) and its data records. */
type NvEdit =
  | { op: 'set'; key: string; value: unknown }
  | { op: 'drop'; key: string }
  | { op: 'tensorSet'; t: number; key: string; value: unknown }
  | { op: 'tensorDrop'; t: number; key: string }
  | { op: 'version'; enc: IntEncoding | 'f32' | 'f64' | 'str'; value: number }
  | { op: 'mapWidth'; width: '16' | '32' }
  | { op: 'entry'; where: MapWhere; t: number; key: Mp; value: Mp }
  | { op: 'nest'; where: MapWhere | 'shape'; t: number; depth: number; kind: 'arr' | 'map' }
  | { op: 'record'; r: number; kind: RecordFault; value: number };

type RecordFault =
  | 'marker'
  | 'intIndex'
  | 'strChunk'
  | 'emptyChunk'
  | 'index'
  | 'drop'
  | 'duplicate'
  | 'swap'
  | 'oversizeLength';

/** How the data records of a native checkpoint are cut and encoded (every choice is valid). */
interface RecordPlan {
  sizes: number[];
  indexWidth: 0 | 1 | 2 | 4;
  binWidth: 0 | 1 | 2 | 4;
}

interface CheckpointCase {
  format: Format;
  /** Arbitrary bytes instead of an encoded checkpoint. */
  raw: Uint8Array | null;
  spec: CheckpointSpec;
  records: RecordPlan;
  stEdits: StEdit[];
  nvEdits: NvEdit[];
  mutations: ByteMutation[];
}

const nameArb: fc.Arbitrary<string> = fc.oneof(
  { weight: 8, arbitrary: fc.stringMatching(/^[a-z][a-z0-9_.]{0,10}$/) },
  { weight: 2, arbitrary: fc.string({ unit: 'grapheme', minLength: 1, maxLength: 6 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', minLength: 1, maxLength: 4 }) },
  { weight: 1, arbitrary: fc.constantFrom('__proto__', 'constructor', 'toString', 'hasOwnProperty', '0', '1') },
  // Lone surrogates: valid in JSON text as escapes, not encodable as UTF-8.
  { weight: 1, arbitrary: fc.constantFrom('\ud800', 'a\udc00', '\udfff\ud800') },
);

const metadataKeyArb: fc.Arbitrary<string> = fc.oneof(
  { weight: 4, arbitrary: fc.string({ unit: 'grapheme-ascii', maxLength: 8 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'grapheme', maxLength: 6 }) },
  { weight: 1, arbitrary: fc.constantFrom(...SPECIAL_KEYS.filter((k) => k !== '__metadata__'), 'k\ud800') },
);

const metadataValueArb: fc.Arbitrary<string> = fc.oneof(
  { weight: 8, arbitrary: fc.string({ unit: 'grapheme', maxLength: 8 }) },
  { weight: 1, arbitrary: fc.constantFrom('\udc00', 'v\ud800v', '') },
);

const shapeArb = fc.array(fc.integer({ min: 0, max: 5 }), { maxLength: 3 });

const tensorSpecArb: fc.Arbitrary<TensorSpec> = fc.record({
  name: nameArb,
  dtype: fc.constantFrom(...DTYPES),
  shape: shapeArb,
});

const checkpointSpecArb: fc.Arbitrary<CheckpointSpec> = fc.record({
  tensors: fc.oneof(
    { weight: 12, arbitrary: fc.uniqueArray(tensorSpecArb, { selector: (t) => t.name, maxLength: 5 }) },
    // Around the tensor-count limit (64).
    {
      weight: 1,
      arbitrary: fc
        .integer({ min: 60, max: 68 })
        .map((n) => Array.from({ length: n }, (_, i): TensorSpec => ({ name: `t${i}`, dtype: 'U8', shape: [i % 3] }))),
    },
  ),
  metadata: fc.option(
    fc.oneof(
      {
        weight: 8,
        arbitrary: fc.uniqueArray(fc.tuple(metadataKeyArb, metadataValueArb), {
          selector: (e) => e[0],
          maxLength: 3,
        }),
      },
      // Around the header limit (16 KiB).
      {
        weight: 1,
        arbitrary: fc.integer({ min: 16_000, max: 16_600 }).map((n): [string, string][] => [['big', 'm'.repeat(n)]]),
      },
    ),
    { nil: null },
  ),
  dataSeed: fc.integer(),
  finite: fc.oneof({ weight: 3, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) }),
});

const recordPlanArb: fc.Arbitrary<RecordPlan> = fc.record({
  sizes: fc.array(fc.integer({ min: 1, max: 40 }), { minLength: 1, maxLength: 4 }),
  indexWidth: fc.constantFrom(0, 1, 2, 4),
  binWidth: fc.constantFrom(0, 1, 2, 4),
});

const at = fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true });

const byteMutationArb: fc.Arbitrary<ByteMutation> = fc.oneof(
  fc.record({ op: fc.constant('flip' as const), at, bit: fc.integer({ min: 0, max: 7 }) }),
  fc.record({ op: fc.constant('truncate' as const), at }),
  fc.record({ op: fc.constant('append' as const), bytes: fc.uint8Array({ minLength: 1, maxLength: 12 }) }),
  fc.record({
    op: fc.constant('splice' as const),
    at,
    remove: fc.integer({ min: 0, max: 8 }),
    insert: fc.uint8Array({ maxLength: 8 }),
  }),
);

const weirdNumberArb = fc.constantFrom(
  -1,
  0,
  1,
  1.5,
  -0,
  2 ** 31,
  2 ** 32,
  2 ** 53 - 1,
  2 ** 53,
  2 ** 64,
  1e21,
  1e308,
  Number.MIN_VALUE,
  -(2 ** 53),
);

/** Objects whose keys are Object.prototype's names or `__proto__`, as own keys. */
const specialObjectArb: fc.Arbitrary<Record<string, unknown>> = fc
  .uniqueArray(fc.tuple(fc.constantFrom(...SPECIAL_KEYS), fc.oneof(fc.jsonValue({ maxDepth: 1 }), weirdNumberArb)), {
    selector: (e) => e[0],
    minLength: 1,
    maxLength: 3,
  })
  .map(ownObject);

/** JSON values around what a checkpoint header holds, with prototype names as keys. */
const jsonLikeArb: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 3, arbitrary: fc.jsonValue({ maxDepth: 2 }).map(viaJson) },
  { weight: 2, arbitrary: weirdNumberArb },
  {
    weight: 2,
    arbitrary: fc.array(fc.oneof(weirdNumberArb, fc.integer({ min: -3, max: 100 })), { maxLength: 4 }),
  },
  {
    weight: 2,
    arbitrary: fc.constantFrom(...DTYPES, 'F4', 'F6_E2M3', 'F6_E3M2', 'C64', 'f32', '', 'I128', 'F8_E4M3FNUZ', 'U1'),
  },
  { weight: 1, arbitrary: specialObjectArb },
);

const entryKeyArb = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom('dtype', 'shape', 'data_offsets') },
  { weight: 1, arbitrary: fc.constantFrom(...SPECIAL_KEYS, 'extra', 'DTYPE', '') },
);

const NUMBER_TEXTS = [
  '1e400',
  '-1e400',
  '1e21',
  '123456789012345678901234567890',
  '-0',
  '0.0',
  '1.0',
  '4.0',
  '1E1',
  '9007199254740993',
  '0e5',
  '-1',
  '1.5',
];

const stEditArb: fc.Arbitrary<StEdit> = fc.oneof(
  fc.record({ op: fc.constant('entry' as const), t: fc.nat(), key: entryKeyArb, value: jsonLikeArb }),
  fc.record({ op: fc.constant('dropKey' as const), t: fc.nat(), key: entryKeyArb }),
  fc.record({
    op: fc.constant('shift' as const),
    t: fc.nat(),
    begin: fc.integer({ min: -8, max: 8 }),
    end: fc.integer({ min: -8, max: 8 }),
  }),
  fc.record({ op: fc.constant('swapOffsets' as const), t: fc.nat(), u: fc.nat() }),
  fc.record({
    op: fc.constant('top' as const),
    key: fc.oneof(nameArb, fc.constantFrom(...SPECIAL_KEYS)),
    value: jsonLikeArb,
  }),
  fc.record({ op: fc.constant('dropTop' as const), t: fc.nat() }),
  fc.record({ op: fc.constant('metadata' as const), value: jsonLikeArb }),
  fc.record({
    op: fc.constant('nest' as const),
    where: fc.constantFrom('top', 'metadata', 'entry', 'shape'),
    depth: fc.oneof(
      fc.integer({ min: 1, max: 70 }),
      fc.integer({ min: 60, max: 70 }),
      fc.integer({ min: 1, max: 8000 }),
    ),
    kind: fc.constantFrom('array', 'object'),
  }),
  fc.record({
    op: fc.constant('duplicate' as const),
    where: fc.constantFrom('top', 'entry', 'metadata'),
    t: fc.nat(),
    same: fc.boolean(),
  }),
  fc.record({
    op: fc.constant('number' as const),
    t: fc.nat(),
    field: fc.constantFrom('shape', 'data_offsets'),
    text: fc.constantFrom(...NUMBER_TEXTS),
  }),
  fc.record({
    op: fc.constant('pad' as const),
    text: fc.oneof(
      fc.constantFrom(' ', '   ', '\t', '\n', '\r\n', '\u0000', 'x', '}', ',', '\u00a0'),
      fc.integer({ min: 1, max: 40 }).map((n) => ' '.repeat(n)),
    ),
  }),
  fc.record({
    op: fc.constant('text' as const),
    at,
    remove: fc.integer({ min: 0, max: 6 }),
    insert: fc.string({ unit: 'binary-ascii', maxLength: 4 }),
  }),
  fc.record({ op: fc.constant('replace' as const), text: fc.json({ maxDepth: 3 }) }),
  fc.record({
    op: fc.constant('headerBytes' as const),
    at,
    insert: fc.oneof(
      fc.constantFrom(
        Uint8Array.of(0xff),
        Uint8Array.of(0xc0, 0x80),
        Uint8Array.of(0xed, 0xa0, 0x80),
        Uint8Array.of(0xef, 0xbb, 0xbf),
      ),
      fc.uint8Array({ minLength: 1, maxLength: 3 }),
    ),
  }),
  fc.record({ op: fc.constant('prefix' as const), delta: fc.integer({ min: -16, max: 16 }) }),
  fc.record({
    op: fc.constant('prefixValue' as const),
    low: fc.nat({ max: 0xffffffff }),
    high: fc.oneof(fc.constant(0), fc.nat({ max: 0xffffffff })),
  }),
);

const mpKeyArb: fc.Arbitrary<Mp> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc
      .constantFrom('format', 'version', 'tensors', 'metadata', 'name', 'dtype', 'shape')
      .map((v): Mp => ({ t: 'str', v })),
  },
  { weight: 1, arbitrary: fc.constantFrom(...SPECIAL_KEYS).map((v): Mp => ({ t: 'str', v })) },
  {
    weight: 2,
    arbitrary: fc.constantFrom<Mp>(
      { t: 'int', v: 1 },
      { t: 'nil' },
      { t: 'bool', v: true },
      { t: 'f64', v: 1.5 },
      { t: 'bin', v: Uint8Array.of(0x61) },
      { t: 'arr', items: [] },
      { t: 'raw', bytes: Uint8Array.of(0xa2, 0xff, 0xfe) },
      { t: 'raw', bytes: Uint8Array.of(0xa3, 0xed, 0xa0, 0x80) },
    ),
  },
);

const mpValueArb: fc.Arbitrary<Mp> = fc.oneof(
  { weight: 3, arbitrary: jsonLikeArb.map(toMp) },
  {
    weight: 1,
    arbitrary: fc.record({
      t: fc.constant('ext' as const),
      type: fc.integer({ min: -128, max: 127 }),
      data: fc.constantFrom(1, 2, 4, 8, 16, 3).map((n) => new Uint8Array(n)),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.constantFrom<Mp>(
      { t: 'raw', bytes: Uint8Array.of(0xc1) },
      { t: 'f32', v: Number.NaN },
      { t: 'f64', v: Number.POSITIVE_INFINITY },
    ),
  },
);

const mapWhereArb = fc.constantFrom<MapWhere>('top', 'tensor', 'metadata');

const nvEditArb: fc.Arbitrary<NvEdit> = fc.oneof(
  fc.record({
    op: fc.constant('set' as const),
    key: fc.constantFrom('format', 'version', 'tensors', 'metadata', 'extra', ...SPECIAL_KEYS),
    value: fc.oneof(
      jsonLikeArb,
      fc.constantFrom<unknown>(NATIVE_FORMAT_NAME, 'trajgate-checkpoint ', 1, 2, 0, -1, '1'),
    ),
  }),
  fc.record({ op: fc.constant('drop' as const), key: fc.constantFrom('format', 'version', 'tensors', 'metadata') }),
  fc.record({
    op: fc.constant('tensorSet' as const),
    t: fc.nat(),
    key: entryKeyArb.map((k) => (k === 'data_offsets' ? 'name' : k)),
    value: jsonLikeArb,
  }),
  fc.record({ op: fc.constant('tensorDrop' as const), t: fc.nat(), key: fc.constantFrom('name', 'dtype', 'shape') }),
  fc.record({
    op: fc.constant('version' as const),
    enc: fc.constantFrom<IntEncoding | 'f32' | 'f64' | 'str'>(
      'u8',
      'u16',
      'u32',
      'u64',
      'i8',
      'i16',
      'i32',
      'i64',
      'f32',
      'f64',
      'str',
    ),
    value: fc.constantFrom(1, 1, 1, 0, 2, 255),
  }),
  fc.record({ op: fc.constant('mapWidth' as const), width: fc.constantFrom<'16' | '32'>('16', '32') }),
  fc.record({ op: fc.constant('entry' as const), where: mapWhereArb, t: fc.nat(), key: mpKeyArb, value: mpValueArb }),
  fc.record({
    op: fc.constant('nest' as const),
    where: fc.constantFrom<MapWhere | 'shape'>('top', 'tensor', 'metadata', 'shape'),
    t: fc.nat(),
    depth: fc.oneof(
      fc.integer({ min: 1, max: 70 }),
      fc.integer({ min: 58, max: 66 }),
      fc.integer({ min: 1, max: 8000 }),
    ),
    kind: fc.constantFrom<'arr' | 'map'>('arr', 'map'),
  }),
  fc.record({
    op: fc.constant('record' as const),
    r: fc.nat(),
    kind: fc.constantFrom<RecordFault>(
      'marker',
      'intIndex',
      'strChunk',
      'emptyChunk',
      'index',
      'drop',
      'duplicate',
      'swap',
      'oversizeLength',
    ),
    value: fc.nat({ max: 300 }),
  }),
);

const noEdits = { stEdits: [] as StEdit[], nvEdits: [] as NvEdit[], mutations: [] as ByteMutation[] };

const formatArb = fc.constantFrom<Format>('safetensors', 'native');

const checkpointCaseArb: fc.Arbitrary<CheckpointCase> = fc.oneof(
  // Arbitrary bytes, bare or behind a plausible start.
  {
    weight: 2,
    arbitrary: fc
      .record({
        format: formatArb,
        bytes: fc.uint8Array({ maxLength: 200 }),
        lead: fc.constantFrom('none', 'safetensors', 'native'),
        headerLength: fc.nat({ max: 300 }),
      })
      .map(({ format, bytes, lead, headerLength }) => {
        let raw: Uint8Array = bytes;
        if (lead === 'safetensors') {
          const prefix = Buffer.alloc(9);
          prefix.writeUInt32LE(headerLength, 0);
          prefix[8] = 0x7b;
          raw = Buffer.concat([prefix, bytes]);
        } else if (lead === 'native') {
          raw = Buffer.concat([Uint8Array.of(0x84), bytes]);
        }
        return { format, raw, spec: EMPTY_SPEC, records: DEFAULT_PLAN, ...noEdits };
      }),
  },
  // Valid checkpoints, native ones with records cut and encoded in any valid way.
  {
    weight: 3,
    arbitrary: fc
      .record({ format: formatArb, spec: checkpointSpecArb, records: recordPlanArb })
      .map((c) => ({ ...c, raw: null, ...noEdits })),
  },
  // Valid checkpoints with byte mutations.
  {
    weight: 3,
    arbitrary: fc
      .record({
        format: formatArb,
        spec: checkpointSpecArb,
        records: recordPlanArb,
        mutations: fc.array(byteMutationArb, { minLength: 1, maxLength: 3 }),
      })
      .map((c) => ({ ...c, raw: null, stEdits: [], nvEdits: [] })),
  },
  // safetensors header edits (and sometimes byte mutations on top).
  {
    weight: 5,
    arbitrary: fc
      .record({
        spec: checkpointSpecArb,
        stEdits: fc.array(stEditArb, { minLength: 1, maxLength: 3 }),
        mutations: fc.array(byteMutationArb, { maxLength: 1 }),
      })
      .map((c) => ({ ...c, format: 'safetensors' as const, raw: null, records: DEFAULT_PLAN, nvEdits: [] })),
  },
  // native header and record edits.
  {
    weight: 5,
    arbitrary: fc
      .record({
        spec: checkpointSpecArb,
        records: recordPlanArb,
        nvEdits: fc.array(nvEditArb, { minLength: 1, maxLength: 3 }),
        mutations: fc.array(byteMutationArb, { maxLength: 1 }),
      })
      .map((c) => ({ ...c, format: 'native' as const, raw: null, stEdits: [] })),
  },
);

const EMPTY_SPEC: CheckpointSpec = { tensors: [], metadata: null, dataSeed: 0, finite: true };
const DEFAULT_PLAN: RecordPlan = { sizes: [4096], indexWidth: 0, binWidth: 0 };

// ---------------------------------------------------------------------------------------------------------------
// Checkpoints: building bodies
// ---------------------------------------------------------------------------------------------------------------

function buildTensors(spec: CheckpointSpec): TensorData[] {
  const random = prng(spec.dataSeed);
  return spec.tensors.map((t) => {
    const size = DTYPE_SIZES[t.dtype];
    const data = new Uint8Array(elementCount(t.shape) * size);
    for (let i = 0; i < data.length; i++) data[i] = Math.floor(random() * 256);
    // The exponent's top bit lives in bit 6 of an element's last byte in every float dtype: cleared, the
    // exponent is never all ones (no NaN or infinity; F8_E4M3's NaN 0x7f and F8_E8M0's 0xff are gone too).
    if (spec.finite && isFloatDtype(t.dtype)) for (let e = size - 1; e < data.length; e += size) data[e] &= 0xbf;
    // Otherwise the first element is all ones: a NaN in every float dtype.
    if (!spec.finite && isFloatDtype(t.dtype)) data.fill(0xff, 0, Math.min(size, data.length));
    return { name: t.name, dtype: t.dtype, shape: [...t.shape], data };
  });
}

const metadataOf = (spec: CheckpointSpec) =>
  spec.metadata ? (ownObject(spec.metadata) as Record<string, string>) : null;

/** What a valid-by-construction checkpoint must decode as. */
interface Expected {
  tensors: TensorData[];
  metadata: Record<string, string> | null;
  /** The header's size, to tell whether it exceeds LIMITS.maxHeaderBytes. */
  headerBytes: number;
}

interface BuiltCheckpoint {
  body: Uint8Array;
  /** Null when the body was edited or mutated. */
  expected: Expected | null;
}

function buildCheckpoint(c: CheckpointCase): BuiltCheckpoint {
  if (c.raw) return { body: c.raw, expected: null };
  const tensors = buildTensors(c.spec);
  const metadata = metadataOf(c.spec);
  const built = c.format === 'safetensors' ? buildSafetensors(c, tensors, metadata) : buildNative(c, tensors, metadata);
  let body = built.body;
  for (const m of c.mutations) body = mutate(body, m);
  return { body, expected: c.mutations.length === 0 && !nativeProtoKey(c) ? built.expected : null };
}

/** A native header whose metadata has a `__proto__` key: refused, since msgpack decoders rename that key. */
function nativeProtoKey(c: CheckpointCase): boolean {
  return c.format === 'native' && (c.spec.metadata?.some(([k]) => k === '__proto__') ?? false);
}

/**
 * Why a case is invalid by construction (its decoder must refuse it), or null when that is not certain. Only
 * a single header edit without byte mutations is judged: edits can undo each other.
 */
function mustRefuse(c: CheckpointCase): string | null {
  if (!c.raw && c.mutations.length === 0 && c.stEdits.length + c.nvEdits.length === 0 && nativeProtoKey(c)) {
    return "a '__proto__' map key in a native header";
  }
  if (c.raw || c.mutations.length > 0 || c.stEdits.length + c.nvEdits.length !== 1) return null;
  const hasTensors = c.spec.tensors.length > 0;
  const st = c.stEdits[0];
  if (st?.op === 'duplicate') {
    const exists = st.where !== 'top' || hasTensors || c.spec.metadata !== null;
    return st.where === 'entry' && !hasTensors ? null : exists ? 'a key repeated within an object' : null;
  }
  if (st?.op === 'nest') {
    const levels = st.depth + (hasTensors && (st.where === 'entry' || st.where === 'shape') ? 2 : 1);
    if (levels > 64) return `arrays or objects nested ${levels} levels deep`;
    // An unknown key in an entry is allowed; one empty array as a shape is a scalar's.
    const maybeValid =
      hasTensors && (st.where === 'entry' || (st.where === 'shape' && st.kind === 'array' && st.depth === 1));
    return maybeValid ? null : 'a nested value where a tensor, shape or string belongs';
  }
  const nv = c.nvEdits[0];
  if (!nv) return null;
  switch (nv.op) {
    case 'version':
      if (nv.enc === 'f32' || nv.enc === 'f64') return 'a version encoded as a msgpack float';
      if (nv.enc === 'str' || nv.value !== 1) return 'a version other than the integer 1';
      return null;
    case 'set':
      return ['format', 'version', 'tensors', 'metadata'].includes(nv.key)
        ? null
        : `an unknown header key ${show(nv.key)}`;
    case 'drop':
      return nv.key === 'metadata' ? null : `no ${nv.key} in the header`;
    case 'nest':
      // [1] is a valid shape.
      return nv.where === 'shape' && nv.kind === 'arr' && nv.depth === 1 && c.spec.tensors.length > 0
        ? null
        : 'a nested value where none is allowed';
    case 'entry': {
      const onMetadata = nv.where === 'metadata' && c.spec.metadata !== null;
      const keys = onMetadata ? c.spec.metadata?.map(([k]) => k) : null;
      const plainKey = nv.key.t === 'str' && !keys?.includes(nv.key.v);
      return onMetadata && plainKey && nv.value.t === 'str' ? null : 'a map entry the format does not allow';
    }
    case 'record':
      return ['marker', 'intIndex', 'strChunk', 'emptyChunk', 'drop', 'duplicate', 'oversizeLength'].includes(nv.kind)
        ? `a data record with ${nv.kind}`
        : null;
    default:
      return null;
  }
}

function mutate(body: Uint8Array, m: ByteMutation): Uint8Array {
  switch (m.op) {
    case 'flip': {
      if (body.length === 0) return body;
      const out = Uint8Array.from(body);
      out[Math.floor(m.at * out.length)] ^= 1 << m.bit;
      return out;
    }
    case 'truncate':
      return body.subarray(0, Math.floor(m.at * body.length));
    case 'append':
      return Buffer.concat([body, m.bytes]);
    case 'splice': {
      const i = Math.floor(m.at * body.length);
      return Buffer.concat([body.subarray(0, i), m.insert, body.subarray(Math.min(body.length, i + m.remove))]);
    }
  }
}

function safetensorsHeaderObject(
  tensors: TensorData[],
  metadata: Record<string, string> | null,
): Record<string, unknown> {
  const header: Record<string, unknown> = {};
  if (metadata) setOwn(header, '__metadata__', metadata);
  let offset = 0;
  for (const t of tensors) {
    setOwn(header, t.name, { dtype: t.dtype, shape: [...t.shape], data_offsets: [offset, offset + t.data.byteLength] });
    offset += t.data.byteLength;
  }
  return header;
}

function withPrefix(headerBytes: Uint8Array, declared = BigInt(headerBytes.byteLength)): Buffer {
  const out = Buffer.alloc(8 + headerBytes.byteLength);
  out.writeBigUInt64LE(declared, 0);
  out.set(headerBytes, 8);
  return out;
}

function buildSafetensors(
  c: CheckpointCase,
  tensors: TensorData[],
  metadata: Record<string, string> | null,
): { body: Uint8Array; expected: Expected | null } {
  const data = Buffer.concat(tensors.map((t) => t.data));
  if (c.stEdits.length === 0) {
    // The SDK writer; it cannot write a tensor named __proto__ (see the report): that one is laid out by hand.
    const body = tensors.some((t) => t.name === '__proto__')
      ? Buffer.concat([withPrefix(padded(JSON.stringify(safetensorsHeaderObject(tensors, metadata)))), data])
      : encodeSafetensors(tensors, metadata ?? undefined);
    return { body, expected: { tensors, metadata, headerBytes: Number(body.readBigUInt64LE(0)) } };
  }
  const header = safetensorsHeaderObject(tensors, metadata);
  const raw: string[] = [];
  const slot = (text: string) => {
    raw.push(text);
    return `\u0000raw${raw.length - 1}\u0000`;
  };
  const names = () => Object.keys(header).filter((k) => k !== '__metadata__');
  const entryOf = (t: number): Record<string, unknown> | null => {
    const list = names();
    if (list.length === 0) return null;
    const value = header[list[t % list.length]];
    return isRecord(value) ? value : null;
  };
  const textEdits: StEdit[] = [];
  let prefixDelta = 0;
  let prefixValue: bigint | null = null;
  for (const e of c.stEdits) {
    switch (e.op) {
      case 'entry': {
        const entry = entryOf(e.t);
        if (entry) setOwn(entry, e.key, e.value);
        break;
      }
      case 'dropKey': {
        const entry = entryOf(e.t);
        if (entry) delete entry[e.key];
        break;
      }
      case 'shift': {
        const entry = entryOf(e.t);
        const offsets = entry?.data_offsets;
        if (entry && Array.isArray(offsets) && offsets.length === 2 && offsets.every((o) => typeof o === 'number')) {
          setOwn(entry, 'data_offsets', [offsets[0] + e.begin, offsets[1] + e.end]);
        }
        break;
      }
      case 'swapOffsets': {
        const a = entryOf(e.t);
        const b = entryOf(e.u);
        if (a && b) [a.data_offsets, b.data_offsets] = [b.data_offsets, a.data_offsets];
        break;
      }
      case 'top':
        setOwn(header, e.key, e.value);
        break;
      case 'dropTop': {
        const list = Object.keys(header);
        if (list.length > 0) delete header[list[e.t % list.length]];
        break;
      }
      case 'metadata':
        setOwn(header, '__metadata__', e.value);
        break;
      case 'nest': {
        const deep =
          e.kind === 'array'
            ? '['.repeat(e.depth) + ']'.repeat(e.depth)
            : `${'{"a":'.repeat(e.depth)}1${'}'.repeat(e.depth)}`;
        const entry = entryOf(0);
        if (e.where === 'top') setOwn(header, 'deep', slot(deep));
        else if (e.where === 'metadata') setOwn(header, '__metadata__', slot(deep));
        else if (entry && e.where === 'entry') setOwn(entry, 'deep', slot(deep));
        else if (entry) setOwn(entry, 'shape', slot(deep));
        else setOwn(header, 'deep', slot(deep));
        break;
      }
      case 'duplicate': {
        const entry = entryOf(e.t);
        if (e.where === 'entry' && entry) {
          const parts = Object.keys(entry).map((k) => `${JSON.stringify(k)}:${JSON.stringify(entry[k]) ?? 'null'}`);
          const again = parts[e.t % Math.max(parts.length, 1)] ?? '"dtype":"F32"';
          setOwn(header, names()[e.t % names().length], slot(`{${[again, ...parts].join(',')}}`));
        } else if (e.where === 'metadata') {
          setOwn(header, '__metadata__', slot(e.same ? '{"k":"v","k":"v"}' : '{"k":"v","k":"w"}'));
        } else {
          textEdits.push(e);
        }
        break;
      }
      case 'number': {
        const entry = entryOf(e.t);
        const text = e.field === 'shape' ? `[${e.text}]` : `[0,${e.text}]`;
        if (entry) setOwn(entry, e.field, slot(text));
        else setOwn(header, 'n', slot(text));
        break;
      }
      case 'prefix':
        prefixDelta += e.delta;
        break;
      case 'prefixValue':
        prefixValue = (BigInt(e.high) << 32n) | BigInt(e.low);
        break;
      default:
        textEdits.push(e);
    }
  }
  let text = JSON.stringify(header);
  raw.forEach((r, i) => {
    text = text.replace(`"\\u0000raw${i}\\u0000"`, () => r);
  });
  const bytesEdits: { at: number; insert: Uint8Array }[] = [];
  for (const e of textEdits) {
    if (e.op === 'duplicate') {
      // A top-level key repeated: the first tensor's (or __metadata__) again at the front.
      const key = names()[e.t % Math.max(names().length, 1)] ?? '__metadata__';
      const value = e.same ? (JSON.stringify(header[key]) ?? '{}') : '{"dtype":"U8","shape":[0],"data_offsets":[0,0]}';
      text = `{${JSON.stringify(key)}:${value}${text.length > 2 ? ',' : ''}${text.slice(1)}`;
    } else if (e.op === 'pad') {
      text += e.text;
    } else if (e.op === 'text') {
      const i = Math.floor(e.at * text.length);
      text = text.slice(0, i) + e.insert + text.slice(i + e.remove);
    } else if (e.op === 'replace') {
      text = e.text;
    } else if (e.op === 'headerBytes') {
      bytesEdits.push(e);
    }
  }
  let headerBytes: Buffer = Buffer.from(text, 'utf8');
  for (const e of bytesEdits) {
    const i = Math.floor(e.at * headerBytes.length);
    headerBytes = Buffer.concat([headerBytes.subarray(0, i), e.insert, headerBytes.subarray(i)]);
  }
  let declared = prefixValue ?? BigInt(headerBytes.length) + BigInt(prefixDelta);
  if (declared < 0n) declared = 0n;
  return { body: Buffer.concat([withPrefix(headerBytes, declared), data]), expected: null };
}

function padded(json: string): Buffer {
  const bytes = Buffer.from(json, 'utf8');
  return Buffer.concat([bytes, Buffer.alloc((8 - (bytes.length % 8)) % 8, 0x20)]);
}

/** A JSON-like value as msgpack: safe integers as ints, other numbers as float64. */
function toMp(value: unknown): Mp {
  if (value === null || value === undefined) return { t: 'nil' };
  if (typeof value === 'boolean') return { t: 'bool', v: value };
  if (typeof value === 'number') return Number.isSafeInteger(value) ? { t: 'int', v: value } : { t: 'f64', v: value };
  if (typeof value === 'string') return { t: 'str', v: value };
  if (value instanceof Uint8Array) return { t: 'bin', v: value };
  if (Array.isArray(value)) return { t: 'arr', items: value.map(toMp) };
  if (typeof value === 'object') {
    const obj = value as Record<string, unknown>;
    return { t: 'map', entries: Object.keys(obj).map((k): [Mp, Mp] => [{ t: 'str', v: k }, toMp(obj[k])]) };
  }
  return { t: 'nil' };
}

function encodeMp(value: Mp, out: number[]): void {
  const u = (n: number, bytes: number) => {
    for (let i = bytes - 1; i >= 0; i--) out.push(Number((BigInt(n) >> BigInt(8 * i)) & 0xffn));
  };
  const s = (n: bigint, bytes: number) => {
    const v = BigInt.asUintN(8 * bytes, n);
    for (let i = bytes - 1; i >= 0; i--) out.push(Number((v >> BigInt(8 * i)) & 0xffn));
  };
  const push = (bytes: Uint8Array) => {
    for (const b of bytes) out.push(b);
  };
  switch (value.t) {
    case 'nil':
      out.push(0xc0);
      return;
    case 'bool':
      out.push(value.v ? 0xc3 : 0xc2);
      return;
    case 'raw':
      push(value.bytes);
      return;
    case 'f32': {
      const b = Buffer.alloc(4);
      b.writeFloatBE(value.v);
      out.push(0xca);
      push(b);
      return;
    }
    case 'f64': {
      const b = Buffer.alloc(8);
      b.writeDoubleBE(value.v);
      out.push(0xcb);
      push(b);
      return;
    }
    case 'int': {
      const n = value.v;
      const enc = value.enc;
      if (enc === undefined) {
        if (n >= 0 && n < 128) out.push(n);
        else if (n < 0 && n >= -32) out.push(n & 0xff);
        else if (n >= 0)
          encodeMp(
            { t: 'int', v: n, enc: n <= 0xff ? 'u8' : n <= 0xffff ? 'u16' : n <= 0xffffffff ? 'u32' : 'u64' },
            out,
          );
        else
          encodeMp(
            { t: 'int', v: n, enc: n >= -128 ? 'i8' : n >= -32768 ? 'i16' : n >= -(2 ** 31) ? 'i32' : 'i64' },
            out,
          );
        return;
      }
      const widths: Record<IntEncoding, [number, number]> = {
        u8: [0xcc, 1],
        u16: [0xcd, 2],
        u32: [0xce, 4],
        u64: [0xcf, 8],
        i8: [0xd0, 1],
        i16: [0xd1, 2],
        i32: [0xd2, 4],
        i64: [0xd3, 8],
      };
      const [type, width] = widths[enc];
      out.push(type);
      s(BigInt(n), width);
      return;
    }
    case 'str':
    case 'bin': {
      const bytes = value.t === 'str' ? Buffer.from(value.v, 'utf8') : value.v;
      const n = bytes.length;
      if (value.t === 'str') {
        if (n < 32) out.push(0xa0 | n);
        else if (n <= 0xff) out.push(0xd9, n);
        else if (n <= 0xffff) {
          out.push(0xda);
          u(n, 2);
        } else {
          out.push(0xdb);
          u(n, 4);
        }
      } else if (n <= 0xff) out.push(0xc4, n);
      else if (n <= 0xffff) {
        out.push(0xc5);
        u(n, 2);
      } else {
        out.push(0xc6);
        u(n, 4);
      }
      push(bytes);
      return;
    }
    case 'ext': {
      const n = value.data.length;
      const fixed: Record<number, number> = { 1: 0xd4, 2: 0xd5, 4: 0xd6, 8: 0xd7, 16: 0xd8 };
      if (fixed[n] !== undefined) out.push(fixed[n]);
      else out.push(0xc7, n);
      out.push(value.type & 0xff);
      push(value.data);
      return;
    }
    case 'arr': {
      const n = value.items.length;
      if (n < 16) out.push(0x90 | n);
      else if (n <= 0xffff) {
        out.push(0xdc);
        u(n, 2);
      } else {
        out.push(0xdd);
        u(n, 4);
      }
      for (const item of value.items) encodeMp(item, out);
      return;
    }
    case 'map': {
      const n = value.entries.length;
      const width = value.width ?? (n < 16 ? 'fix' : n <= 0xffff ? '16' : '32');
      if (width === 'fix') out.push(0x80 | n);
      else if (width === '16') {
        out.push(0xde);
        u(n, 2);
      } else {
        out.push(0xdf);
        u(n, 4);
      }
      for (const [k, v] of value.entries) {
        encodeMp(k, out);
        encodeMp(v, out);
      }
      return;
    }
  }
}

function mpBytes(value: Mp): Uint8Array {
  const out: number[] = [];
  encodeMp(value, out);
  return Uint8Array.from(out);
}

function mapGet(map: Mp, key: string): Mp | undefined {
  if (map.t !== 'map') return undefined;
  return map.entries.find(([k]) => k.t === 'str' && k.v === key)?.[1];
}

function mapSet(map: Mp, key: string, value: Mp): void {
  if (map.t !== 'map') return;
  const entry = map.entries.find(([k]) => k.t === 'str' && k.v === key);
  if (entry) entry[1] = value;
  else map.entries.push([{ t: 'str', v: key }, value]);
}

function mapDrop(map: Mp, key: string): void {
  if (map.t !== 'map') return;
  map.entries = map.entries.filter(([k]) => !(k.t === 'str' && k.v === key));
}

/** `depth` arrays (or maps, each `{"a": ...}`) around the integer 1, as raw bytes (encodeMp recurses). */
function nested(depth: number, kind: 'arr' | 'map'): Mp {
  const level = kind === 'arr' ? [0x91] : [0x81, 0xa1, 0x61];
  const bytes = new Uint8Array(depth * level.length + 1);
  for (let i = 0; i < depth; i++) bytes.set(level, i * level.length);
  bytes[bytes.length - 1] = 0x01;
  return { t: 'raw', bytes };
}

interface NativeRecord {
  index: number;
  chunk: Uint8Array;
  /** A replacement for the record's prefix bytes. */
  prefix?: Uint8Array;
}

function recordPrefix(index: number, length: number, plan: RecordPlan): Uint8Array {
  const out: number[] = [0x92];
  const indexWidth = plan.indexWidth === 0 || (plan.indexWidth === 1 && index > 0xff) ? 0 : plan.indexWidth;
  if (indexWidth === 0) encodeMp({ t: 'int', v: index }, out);
  else encodeMp({ t: 'int', v: index, enc: indexWidth === 1 ? 'u8' : indexWidth === 2 ? 'u16' : 'u32' }, out);
  const binWidth = plan.binWidth === 0 ? (length <= 0xff ? 1 : length <= 0xffff ? 2 : 4) : plan.binWidth;
  out.push(binWidth === 1 ? 0xc4 : binWidth === 2 ? 0xc5 : 0xc6);
  for (let i = binWidth - 1; i >= 0; i--) out.push(Math.floor(length / 256 ** i) % 256);
  return Uint8Array.from(out);
}

function buildNative(
  c: CheckpointCase,
  tensors: TensorData[],
  metadata: Record<string, string> | null,
): { body: Uint8Array; expected: Expected | null } {
  const onlyValidEdits = c.nvEdits.every(
    (e) =>
      e.op === 'mapWidth' ||
      (e.op === 'version' && e.value === 1 && e.enc !== 'f32' && e.enc !== 'f64' && e.enc !== 'str'),
  );
  const plainPlan = c.records.sizes.length === 1 && c.records.indexWidth === 0 && c.records.binWidth === 0;
  // msgpack strings are UTF-8: a name or metadata string with a lone surrogate cannot be written validly.
  const strings = [...tensors.map((t) => t.name), ...Object.entries(metadata ?? {}).flat()];
  const encodable = strings.every((text) => Buffer.from(text, 'utf8').toString('utf8') === text);
  if (c.nvEdits.length === 0 && plainPlan) {
    // The SDK writer.
    const body = encodeNative(tensors, { chunkBytes: c.records.sizes[0], metadata: metadata ?? undefined });
    const headerBytes = encodeNativeHeader(tensors, metadata ?? undefined).byteLength;
    return { body, expected: encodable ? { tensors, metadata, headerBytes } : null };
  }
  const header: Mp = {
    t: 'map',
    entries: [
      [
        { t: 'str', v: 'format' },
        { t: 'str', v: NATIVE_FORMAT_NAME },
      ],
      [
        { t: 'str', v: 'version' },
        { t: 'int', v: 1 },
      ],
      [
        { t: 'str', v: 'tensors' },
        {
          t: 'arr',
          items: tensors.map((t) => toMp({ name: t.name, dtype: t.dtype, shape: [...t.shape] })),
        },
      ],
    ],
  };
  if (metadata) mapSet(header, 'metadata', toMp(metadata));
  const tensorMap = (t: number): Mp | undefined => {
    const list = mapGet(header, 'tensors');
    return list?.t === 'arr' && list.items.length > 0 ? list.items[t % list.items.length] : undefined;
  };
  const mapAt = (where: MapWhere, t: number): Mp | undefined =>
    where === 'top' ? header : where === 'tensor' ? tensorMap(t) : mapGet(header, 'metadata');

  const records: NativeRecord[] = [];
  tensors.forEach((tensor, index) => {
    for (let pos = 0, i = 0; pos < tensor.data.byteLength; i++) {
      const size = c.records.sizes[i % c.records.sizes.length];
      records.push({ index, chunk: tensor.data.subarray(pos, pos + size) });
      pos += size;
    }
  });
  for (const e of c.nvEdits) {
    switch (e.op) {
      case 'set':
        mapSet(header, e.key, toMp(e.value));
        break;
      case 'drop':
        mapDrop(header, e.key);
        break;
      case 'tensorSet': {
        const m = tensorMap(e.t);
        if (m) mapSet(m, e.key, toMp(e.value));
        break;
      }
      case 'tensorDrop': {
        const m = tensorMap(e.t);
        if (m) mapDrop(m, e.key);
        break;
      }
      case 'version':
        mapSet(
          header,
          'version',
          e.enc === 'f32' || e.enc === 'f64'
            ? { t: e.enc, v: e.value }
            : e.enc === 'str'
              ? { t: 'str', v: String(e.value) }
              : { t: 'int', v: e.value, enc: e.enc },
        );
        break;
      case 'mapWidth':
        if (header.t === 'map') header.width = e.width;
        break;
      case 'entry': {
        const m = mapAt(e.where, e.t) ?? header;
        if (m.t === 'map') m.entries.push([e.key, e.value]);
        break;
      }
      case 'nest': {
        const deep = nested(e.depth, e.kind);
        if (e.where === 'shape') {
          const m = tensorMap(e.t);
          if (m) mapSet(m, 'shape', deep);
          else mapSet(header, 'deep', deep);
        } else {
          const m = mapAt(e.where, e.t) ?? header;
          if (m.t === 'map') m.entries.push([{ t: 'str', v: 'deep' }, deep]);
        }
        break;
      }
      case 'record':
        faultRecords(records, e);
        break;
    }
  }
  const parts: Uint8Array[] = [mpBytes(header)];
  for (const r of records) parts.push(r.prefix ?? recordPrefix(r.index, r.chunk.byteLength, c.records), r.chunk);
  const body = Buffer.concat(parts);
  if (!onlyValidEdits || !encodable) return { body, expected: null };
  return { body, expected: { tensors, metadata, headerBytes: parts[0].byteLength } };
}

function faultRecords(records: NativeRecord[], e: Extract<NvEdit, { op: 'record' }>): void {
  if (records.length === 0) {
    records.push({ index: e.value, chunk: Uint8Array.of(1) });
    return;
  }
  const i = e.r % records.length;
  const r = records[i];
  const length = r.chunk.byteLength;
  const bin = [0xc4, length];
  switch (e.kind) {
    case 'marker':
      r.prefix = Uint8Array.from([
        [0x91, 0x93, 0x82, 0xdc, 0x00][e.value % 5],
        ...mpBytes({ t: 'int', v: r.index }),
        ...bin,
      ]);
      break;
    case 'intIndex':
      r.prefix = Uint8Array.from([0x92, ...mpBytes({ t: 'int', v: r.index, enc: e.value % 2 ? 'i8' : 'u64' }), ...bin]);
      break;
    case 'strChunk':
      r.prefix = Uint8Array.from([0x92, ...mpBytes({ t: 'int', v: r.index }), 0xd9, length]);
      break;
    case 'emptyChunk':
      records.splice(i, 0, { index: r.index, chunk: new Uint8Array(0) });
      break;
    case 'index':
      r.index = e.value;
      break;
    case 'drop':
      records.splice(i, 1);
      break;
    case 'duplicate':
      records.splice(i, 0, { ...r });
      break;
    case 'swap': {
      const j = (i + 1 + (e.value % records.length)) % records.length;
      [records[i], records[j]] = [records[j], r];
      break;
    }
    case 'oversizeLength':
      r.prefix = Uint8Array.from([
        0x92,
        ...mpBytes({ t: 'int', v: r.index }),
        0xc6,
        0x01,
        0x00,
        0x00,
        (e.value & 0xff) + 1,
      ]);
      break;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Checkpoints: direct decoding
// ---------------------------------------------------------------------------------------------------------------

/** Records a decoder's reports and checks the visitor contract of `src/ingest/decoder.ts` as it goes. */
class CheckingVisitor implements TensorVisitor {
  layout: CheckpointLayout | null = null;
  headerCalls = 0;
  private readonly pieces = new Map<number, Uint8Array[]>();
  private readonly next = new Map<number, number>();
  private last = -1;
  private dataCalls = 0;

  onHeader(layout: CheckpointLayout): void {
    if (this.dataCalls > 0 || this.headerCalls > 0) violated('onHeader called twice or after onData');
    this.headerCalls++;
    this.layout = layout;
  }

  onData(index: number, byteOffset: number, bytes: Uint8Array): void {
    const meta = this.layout?.tensors[index];
    if (!meta) violated(`onData for tensor ${index}, outside the layout`);
    if (index < this.last) violated(`onData for tensor ${index} after tensor ${this.last}`);
    this.last = index;
    if (bytes.byteLength === 0) violated(`an empty onData slice for tensor '${meta.name}'`);
    if (byteOffset !== (this.next.get(index) ?? 0))
      violated(`tensor '${meta.name}': slice at ${byteOffset} out of order`);
    if (bytes.byteLength % DTYPE_SIZES[meta.dtype] !== 0) violated(`tensor '${meta.name}': slice not element-aligned`);
    if (byteOffset + bytes.byteLength > meta.byteLength) violated(`tensor '${meta.name}': slice past the tensor's end`);
    this.next.set(index, byteOffset + bytes.byteLength);
    this.dataCalls++;
    const list = this.pieces.get(index) ?? [];
    list.push(Uint8Array.from(bytes));
    this.pieces.set(index, list);
  }

  bytes(index: number): Buffer {
    return Buffer.concat(this.pieces.get(index) ?? []);
  }
}

type Decoded =
  | { ok: true; layout: CheckpointLayout; data: Buffer[]; expectedLength: number | null }
  | { ok: false; code: ErrorCode; message: string };

/**
 * Decodes `body` directly: whole, or in `chunks` (sizes, cycled) copied through one scratch buffer that is
 * overwritten after every write (a decoder must not keep the caller's bytes).
 */
function decodeDirect(format: Format, body: Uint8Array, chunks: readonly number[] | null): Decoded {
  const visitor = new CheckingVisitor();
  const decoder =
    format === 'safetensors' ? createSafetensorsDecoder(visitor, LIMITS) : createNativeDecoder(visitor, LIMITS);
  try {
    if (chunks === null) {
      decoder.write(body);
    } else {
      const scratch = new Uint8Array(Math.max(...chunks));
      for (let pos = 0, i = 0; pos < body.byteLength; i++) {
        const piece = body.subarray(pos, pos + chunks[i % chunks.length]);
        scratch.set(piece);
        decoder.write(scratch.subarray(0, piece.byteLength));
        scratch.fill(0xee);
        pos += piece.byteLength;
      }
    }
    const layout = decoder.end();
    if (visitor.headerCalls !== 1 || layout !== visitor.layout) violated('end() returned a layout onHeader never saw');
    const data = layout.tensors.map((t, i) => {
      const bytes = visitor.bytes(i);
      if (bytes.byteLength !== t.byteLength)
        violated(`tensor '${t.name}': ${bytes.byteLength} of ${t.byteLength} bytes`);
      return bytes;
    });
    return { ok: true, layout, data, expectedLength: decoder.expectedLength };
  } catch (err) {
    if (err instanceof InvariantViolation) throw err;
    if (!isAppError(err)) {
      violated(`the ${format} decoder threw ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}`);
    }
    if (!isErrorCode(err.code) || err.status < 400 || err.status >= 500) {
      violated(`the ${format} decoder refused with ${err.code} (${err.status}), not a 4xx of the catalogue`);
    }
    return { ok: false, code: err.code, message: err.message };
  }
}

function describeDecoded(d: Decoded): string {
  return d.ok
    ? `accepted ${show(
        d.layout.tensors.map((t) => [t.name, t.dtype, t.shape]),
        200,
      )}`
    : `${d.code}: ${d.message}`;
}

/** The decoded layout and bytes are the checkpoint's tensors and metadata. */
function checkDecodedAs(d: Extract<Decoded, { ok: true }>, expected: Expected, format: Format): void {
  const byName = new Map(expected.tensors.map((t) => [t.name, t]));
  const got = d.layout.tensors;
  if (got.length !== expected.tensors.length)
    violated(`decoded ${got.length} tensors, the checkpoint has ${expected.tensors.length}`);
  for (const [i, t] of got.entries()) {
    const want = byName.get(t.name);
    if (!want) violated(`decoded a tensor ${show(t.name)} the checkpoint does not have`);
    if (t.dtype !== want.dtype || !isDeepStrictEqual(t.shape, want.shape) || t.byteLength !== want.data.byteLength) {
      violated(
        `tensor ${show(t.name)} decoded as ${t.dtype} ${show(t.shape)}, written as ${want.dtype} ${show(want.shape)}`,
      );
    }
    if (!d.data[i].equals(Buffer.from(want.data)))
      violated(`tensor ${show(t.name)}: decoded bytes differ from those written`);
    // Native keeps header order; safetensors keeps data order (zero-byte tensors may come in any order).
    if (format === 'native' && expected.tensors[i].name !== t.name)
      violated(`tensor ${i} is ${show(t.name)}, out of header order`);
  }
  if (!isDeepStrictEqual(d.layout.metadata, expected.metadata)) {
    violated(`metadata decoded as ${show(d.layout.metadata)}, written as ${show(expected.metadata)}`);
  }
}

/** The checks of one decoder case; also the oracle of the HTTP upload target. */
function checkDecoderCase(
  c: CheckpointCase,
  decodeAs: Format,
  chunks: readonly number[],
): { built: BuiltCheckpoint; whole: Decoded } {
  const built = buildCheckpoint(c);
  const { body, expected } = built;
  const where = () => `${decodeAs} decoder, body ${hexPreview(body)}`;
  const whole = decodeDirect(decodeAs, body, null);
  const split = decodeDirect(decodeAs, body, chunks);
  // Accepted alike, or refused alike; a body both malformed and over the header limit may be refused for either,
  // depending on how much of it had arrived when the limit was checked.
  const same =
    whole.ok && split.ok
      ? isDeepStrictEqual(whole.layout, split.layout) && whole.data.every((b, i) => b.equals(split.data[i]))
      : !whole.ok &&
        !split.ok &&
        (whole.code === split.code || whole.code === 'header_too_large' || split.code === 'header_too_large');
  if (!same) {
    violated(
      `${where()}: whole it is ${describeDecoded(whole)}; in chunks ${show(chunks)} it is ${describeDecoded(split)}`,
    );
  }
  const invalid = decodeAs === c.format ? mustRefuse(c) : null;
  if (invalid && whole.ok) violated(`${where()}: accepted a checkpoint with ${invalid}`);
  if (whole.ok && whole.expectedLength !== null && whole.expectedLength !== body.byteLength) {
    violated(`${where()}: accepted, but expectedLength ${whole.expectedLength} is not the body's length`);
  }
  if (expected && decodeAs === c.format) {
    if (expected.headerBytes > LIMITS.maxHeaderBytes || expected.tensors.length > LIMITS.maxTensors) {
      if (whole.ok) violated(`${where()}: accepted a checkpoint over the header or tensor-count limit`);
      if (whole.code !== 'header_too_large' && whole.code !== 'malformed_checkpoint') {
        violated(`${where()}: over a limit, refused as ${whole.code}: ${whole.message}`);
      }
    } else {
      if (!whole.ok) violated(`${where()}: a valid checkpoint was refused: ${whole.code}: ${whole.message}`);
      try {
        checkDecodedAs(whole, expected, decodeAs);
      } catch (err) {
        violated(`${where()}: a valid checkpoint decoded wrongly: ${(err as Error).message}`);
      }
    }
  }
  return { built, whole };
}

interface DecoderCase {
  ckpt: CheckpointCase;
  /** Feed the body to the other format's decoder. */
  cross: boolean;
  chunks: number[];
}

const chunksArb = fc.oneof(
  { weight: 4, arbitrary: fc.array(fc.integer({ min: 1, max: 64 }), { minLength: 1, maxLength: 6 }) },
  { weight: 1, arbitrary: fc.constant<number[]>([1]) },
);

const decoderCaseArb: fc.Arbitrary<DecoderCase> = fc.record({
  ckpt: checkpointCaseArb,
  cross: fc.oneof({ weight: 12, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }),
  chunks: chunksArb,
});

const otherFormat = (f: Format): Format => (f === 'safetensors' ? 'native' : 'safetensors');

const decoderTarget: FuzzTarget = {
  name: 'checkpoint-decoders',
  weight: 50,
  run: (numRuns, seed) =>
    fuzz({
      name: 'checkpoint-decoders',
      numRuns,
      seed,
      open: async () => null,
      close: async () => {},
      arbitrary: decoderCaseArb,
      check: async (_env, c) => {
        const decodeAs = c.cross ? otherFormat(c.ckpt.format) : c.ckpt.format;
        const { whole } = checkDecoderCase(c.ckpt, decodeAs, c.chunks);
        return whole.ok ? { status: 'ok' } : { status: String(ERROR_STATUS[whole.code]), code: whole.code };
      },
    }),
};

// ---------------------------------------------------------------------------------------------------------------
// Checkpoints over HTTP
// ---------------------------------------------------------------------------------------------------------------

interface UploadCase {
  ckpt: CheckpointCase;
  /** A run with a committed first checkpoint: a new step (shape checked), or its committed step again. */
  target: 'fresh' | 'base-new-step' | 'base-step';
  /** On the base run: a body with the base tensor table instead of `ckpt`. */
  baseLike: boolean;
  contentType: 'format' | 'other-format' | 'octet' | 'none' | 'params' | 'upper' | 'bogus';
  sha: 'none' | 'right' | 'upper' | 'wrong' | 'bad';
  pin: 'none' | 'true' | 'false' | 'bad';
  /** Send the body with chunked transfer encoding in writes of these sizes. */
  stream: number[] | null;
  dataSeed: number;
}

const uploadCaseArb: fc.Arbitrary<UploadCase> = fc.record({
  ckpt: checkpointCaseArb,
  target: fc.oneof(
    { weight: 6, arbitrary: fc.constant('fresh' as const) },
    { weight: 2, arbitrary: fc.constant('base-new-step' as const) },
    { weight: 1, arbitrary: fc.constant('base-step' as const) },
  ),
  baseLike: fc.boolean(),
  contentType: fc.oneof(
    { weight: 6, arbitrary: fc.constant('format' as const) },
    { weight: 3, arbitrary: fc.constantFrom('octet' as const, 'none' as const) },
    {
      weight: 1,
      arbitrary: fc.constantFrom('other-format' as const, 'params' as const, 'upper' as const, 'bogus' as const),
    },
  ),
  sha: fc.oneof(
    { weight: 6, arbitrary: fc.constant('none' as const) },
    { weight: 3, arbitrary: fc.constant('right' as const) },
    { weight: 1, arbitrary: fc.constantFrom('upper' as const, 'wrong' as const, 'bad' as const) },
  ),
  pin: fc.oneof(
    { weight: 8, arbitrary: fc.constant('none' as const) },
    { weight: 1, arbitrary: fc.constantFrom('true' as const, 'false' as const, 'bad' as const) },
  ),
  stream: fc.oneof(
    { weight: 3, arbitrary: fc.constant(null) },
    { weight: 1, arbitrary: fc.array(fc.integer({ min: 1, max: 48 }), { minLength: 1, maxLength: 4 }) },
  ),
  dataSeed: fc.integer(),
});

const BASE_RUN = 'fuzz-base';
const BASE_TENSORS: TensorSpec[] = [
  { name: 'layer.weight', dtype: 'F32', shape: [3, 2] },
  { name: 'layer.bias', dtype: 'F16', shape: [2] },
];

interface UploadEnv extends HttpEnv {
  baseBody: Uint8Array;
  baseSha: string;
}

function contentTypeFor(kind: UploadCase['contentType'], format: Format): string | null {
  switch (kind) {
    case 'format':
      return MEDIA_TYPES[format];
    case 'other-format':
      return MEDIA_TYPES[otherFormat(format)];
    case 'octet':
      return 'application/octet-stream';
    case 'none':
      return null;
    case 'params':
      return `${MEDIA_TYPES[format]}; charset=binary; x="y"`;
    case 'upper':
      return MEDIA_TYPES[format].toUpperCase();
    case 'bogus':
      return 'application/json';
  }
}

async function openUploadEnv(): Promise<UploadEnv> {
  const env = await openHttp();
  const baseBody = encodeSafetensors(
    buildTensors({ tensors: BASE_TENSORS, metadata: null, dataSeed: 7, finite: true }),
  );
  const answer = await rawRequest(
    env,
    'PUT',
    `/v1/runs/${BASE_RUN}/checkpoints/0`,
    { 'content-type': MEDIA_TYPES.safetensors },
    baseBody,
  );
  if (answer.status !== 201) throw new Error(`could not store the base checkpoint: ${answer.status} ${answer.text}`);
  return { ...env, baseBody, baseSha: sha256(baseBody) };
}

const uploadTarget: FuzzTarget = {
  name: 'checkpoint-http',
  weight: 4,
  run: (numRuns, seed) =>
    fuzz({
      name: 'checkpoint-http',
      numRuns,
      seed,
      open: openUploadEnv,
      close: closeHttp,
      arbitrary: uploadCaseArb,
      check: checkUpload,
      sweep: sweepStore,
    }),
};

async function checkUpload(env: UploadEnv, c: UploadCase): Promise<Outcome> {
  const { catalog, blobs } = env.gw.context;
  const onBase = c.target !== 'fresh';
  const ckpt: CheckpointCase =
    onBase && c.baseLike
      ? {
          format: 'safetensors',
          raw: null,
          spec: { tensors: BASE_TENSORS, metadata: null, dataSeed: c.dataSeed, finite: true },
          records: DEFAULT_PLAN,
          ...noEdits,
        }
      : c.ckpt;
  let body = buildCheckpoint(ckpt).body;
  if (c.target === 'base-step' && c.baseLike) body = env.baseBody;
  const run = onBase ? BASE_RUN : fresh(env, 'up');
  const step = c.target === 'base-step' ? 0 : 1 + env.next++;
  const headers: Record<string, string> = {};
  const type = contentTypeFor(c.contentType, ckpt.format);
  if (type !== null) headers['content-type'] = type;
  const digest = sha256(body);
  if (c.sha === 'right') headers[SHA256_HEADER] = digest;
  if (c.sha === 'upper') headers[SHA256_HEADER] = digest.toUpperCase();
  if (c.sha === 'wrong') headers[SHA256_HEADER] = sha256(Buffer.concat([body, Uint8Array.of(0)]));
  if (c.sha === 'bad') headers[SHA256_HEADER] = digest.slice(1);
  const query = c.pin === 'none' ? '' : `?pin=${c.pin === 'bad' ? 'yes' : c.pin}`;
  const urlPath = `/v1/runs/${run}/checkpoints/${step}${query}`;
  const what = () =>
    `PUT ${urlPath} (${show(headers)}${c.stream ? `, chunked ${show(c.stream)}` : ''}) with body ${hexPreview(body)}`;

  const before = onBase ? await catalog.getCheckpoint(BASE_RUN, 0) : null;
  const baseBlobs = onBase ? (await blobsUnder(env, `runs/${BASE_RUN}/`)).length : 0;
  const answer = await rawRequest(env, 'PUT', urlPath, headers, body, c.stream);
  const outcome = outcomeOf(answer, what);
  await assertNothingStaged(env, what);

  // The format the gateway decodes the body as, and the oracle: the same body decoded directly.
  const declared = type === null ? 'sniff' : type.split(';')[0].trim().toLowerCase();
  const usedFormat: Format | null =
    declared === MEDIA_TYPES.safetensors
      ? 'safetensors'
      : declared === MEDIA_TYPES.native
        ? 'native'
        : declared === 'sniff' || declared === 'application/octet-stream'
          ? sniffFormat(body)
          : null;
  const direct = usedFormat ? decodeDirect(usedFormat, body, null) : null;

  if (answer.status === 201) {
    if (c.target === 'base-step') violated(`${what()}: a committed step answered 201`);
    if (!direct?.ok)
      violated(`${what()}: stored, but a direct decode says ${direct ? describeDecoded(direct) : 'no format'}`);
    if (c.sha === 'wrong' || c.sha === 'bad' || c.pin === 'bad' || c.contentType === 'bogus') {
      violated(`${what()}: stored despite a bad header or query`);
    }
    const record = answer.json as Record<string, unknown>;
    const tensors = Array.isArray(record.tensors) ? (record.tensors as Record<string, unknown>[]) : [];
    const table = tensors.map((t) => [t.name, t.dtype, t.shape]);
    const decodedTable = direct.layout.tensors.map((t) => [t.name, t.dtype, t.shape]);
    if (record.sha256 !== digest || record.bytes !== body.byteLength || record.format !== usedFormat) {
      violated(`${what()}: stored as ${show({ sha256: record.sha256, bytes: record.bytes, format: record.format })}`);
    }
    if (!isDeepStrictEqual(table, viaJson(decodedTable))) {
      violated(`${what()}: tensor table ${show(table)}, the body decodes as ${show(decodedTable)}`);
    }
    if (!isDeepStrictEqual(record.metadata, viaJson(direct.layout.metadata))) {
      violated(`${what()}: metadata ${show(record.metadata)}, the body decodes as ${show(direct.layout.metadata)}`);
    }
    const row = await catalog.getCheckpoint(run, step);
    if (!row || row.sha256 !== digest) violated(`${what()}: answered 201 but the catalog has ${show(row?.sha256)}`);
    const blob = await blobs.head(row.blobKey);
    if (!blob || blob.size !== body.byteLength) violated(`${what()}: the stored blob is ${show(blob)}`);
    const content = await call(env, 'get', `/v1/runs/${run}/checkpoints/${step}/content`)
      .buffer(true)
      .parse((res, done) => {
        const pieces: Buffer[] = [];
        res.on('data', (b: Buffer) => pieces.push(b));
        res.on('end', () => done(null, Buffer.concat(pieces)));
      });
    const served = content.body as Buffer;
    if (content.status !== 200 || sha256(served) !== digest)
      violated(`${what()}: content served back is ${content.status} ${hexPreview(served)}`);
    return outcome;
  }

  if (answer.status === 200) {
    if (c.target !== 'base-step' || digest !== env.baseSha)
      violated(`${what()}: answered 200 for bytes never committed`);
    return outcome;
  }
  if (answer.status !== 201 && answer.status < 400) violated(`${what()}: answered ${answer.status}`);

  // A refusal: nothing stored.
  if (onBase) {
    const after = await catalog.getCheckpoint(BASE_RUN, 0);
    if (after?.sha256 !== before?.sha256 || after?.uploadId !== before?.uploadId)
      violated(`${what()}: the committed step changed`);
    if (c.target === 'base-new-step' && (await catalog.getCheckpoint(BASE_RUN, step)))
      violated(`${what()}: refused but stored`);
    const count = (await blobsUnder(env, `runs/${BASE_RUN}/`)).length;
    if (count !== baseBlobs) violated(`${what()}: refused, but the run's blobs went from ${baseBlobs} to ${count}`);
  } else {
    if (await catalog.getRun(run)) violated(`${what()}: refused, but run '${run}' was created`);
    if (await catalog.getCheckpoint(run, step)) violated(`${what()}: refused, but a checkpoint row was stored`);
    const left = await blobsUnder(env, `runs/${run}/`);
    if (left.length > 0) violated(`${what()}: refused, but blobs were left: ${left.join(', ')}`);
  }
  // A clean request with a body that decodes must be stored (unless its weights are not finite).
  const clean =
    c.target === 'fresh' &&
    c.sha !== 'wrong' &&
    c.sha !== 'bad' &&
    c.pin !== 'bad' &&
    c.contentType !== 'bogus' &&
    c.contentType !== 'other-format';
  if (clean && direct?.ok && usedFormat === ckpt.format && outcome.code !== 'non_finite_weights') {
    violated(`${what()}: a body that decodes was refused: ${outcome.code}: ${answer.text.slice(0, 400)}`);
  }
  return outcome;
}

// ---------------------------------------------------------------------------------------------------------------
// Metric batches
// ---------------------------------------------------------------------------------------------------------------

type PointValue = Record<string, unknown>;

interface PointCase {
  value: PointValue;
  valid: boolean;
}

interface BigBatch {
  n: number;
  extraKeys: number;
  keyLength: number;
  /** JSON only: spaces after each comma between points. */
  pad: number;
  seed: number;
  /** Index (as a fraction) of a point given a string step, or null. */
  bad: number | null;
}

interface MetricsCase {
  encoding: 'json' | 'msgpack';
  contentType: 'right' | 'x-msgpack' | 'charset' | 'utf16' | 'none' | 'text' | 'swapped';
  wrap: 'array' | 'points' | 'pointsExtra' | 'scalar' | 'object';
  points: PointCase[];
  body:
    | { kind: 'encode' }
    | { kind: 'bom' }
    | { kind: 'truncate'; at: number }
    | { kind: 'append'; bytes: Uint8Array }
    | { kind: 'bytes'; bytes: Uint8Array }
    | { kind: 'empty' }
    | { kind: 'nest'; depth: number };
  big: BigBatch | null;
}

const METRIC_NUMBER_FIELDS = [
  'trainLoss',
  'valLoss',
  'lr',
  'gradNorm',
  'gradVariance',
  'updateNorm',
  'gapIncrement',
] as const;

const finiteArb = fc.oneof(
  { weight: 4, arbitrary: fc.double({ noNaN: true, noDefaultInfinity: true }) },
  {
    weight: 1,
    arbitrary: fc.constantFrom(0, -0, 1, Number.MAX_VALUE, -Number.MAX_VALUE, Number.MIN_VALUE, 2 ** 53, 1e-300),
  },
);

const extraKeyArb: fc.Arbitrary<string> = fc.oneof(
  { weight: 4, arbitrary: fc.string({ unit: 'grapheme-ascii', maxLength: 16 }) },
  { weight: 2, arbitrary: fc.string({ unit: 'grapheme', maxLength: 20 }) },
  { weight: 1, arbitrary: fc.constantFrom(...SPECIAL_KEYS, 'x'.repeat(128), 'é'.repeat(128)) },
);

const validPointArb: fc.Arbitrary<PointValue> = fc
  .record(
    {
      step: fc.oneof(
        { weight: 5, arbitrary: fc.nat({ max: 1_000_000 }) },
        { weight: 1, arbitrary: fc.constantFrom(0, 2 ** 53 - 1, 2 ** 32) },
      ),
      trainLoss: finiteArb,
      valLoss: finiteArb,
      lr: finiteArb,
      batchSize: fc.oneof(fc.integer({ min: 1, max: 2 ** 31 }), fc.constant(Number.MAX_SAFE_INTEGER)),
      gradNorm: finiteArb,
      gradVariance: finiteArb,
      updateNorm: finiteArb,
      gapIncrement: finiteArb,
      extra: fc.uniqueArray(fc.tuple(extraKeyArb, finiteArb), { selector: (e) => e[0], maxLength: 6 }).map(ownObject),
    },
    { requiredKeys: ['step'] },
  )
  .map((p) => ownObject(Object.entries(p)));

/** One change that makes a point invalid under `MetricPoint`. */
const pointFaultArb: fc.Arbitrary<{ key: string; value: unknown; drop?: boolean }> = fc.oneof(
  fc.record({
    key: fc.constant('step'),
    value: fc.constantFrom<unknown>(
      -1,
      1.5,
      2 ** 53,
      '3',
      null,
      true,
      [],
      {},
      Number.NaN,
      1e300,
      Number.POSITIVE_INFINITY,
    ),
  }),
  fc.record({ key: fc.constant('step'), value: fc.constant(undefined), drop: fc.constant(true) }),
  fc.record({
    key: fc.constantFrom(...METRIC_NUMBER_FIELDS),
    value: fc.constantFrom<unknown>(
      '1',
      null,
      true,
      [],
      {},
      Number.NaN,
      Number.POSITIVE_INFINITY,
      Number.NEGATIVE_INFINITY,
    ),
  }),
  fc.record({
    key: fc.constant('batchSize'),
    value: fc.constantFrom<unknown>(0, -1, 2.5, '2', null, 2 ** 53, Number.NaN),
  }),
  fc.record({
    key: fc.constant('extra'),
    value: fc.constantFrom<unknown>(
      5,
      'x',
      [1],
      null,
      { k: 'str' },
      { k: Number.NaN },
      { k: null },
      { k: { nested: 1 } },
      { k: Number.POSITIVE_INFINITY },
      { ['y'.repeat(129)]: 1 },
      Object.fromEntries(Array.from({ length: MAX_EXTRA_KEYS + 1 }, (_, i) => [`k${i}`, i])),
    ),
  }),
  fc.record({
    key: fc.constantFrom('foo', 'Step', 'extra2', '', ...SPECIAL_KEYS.filter((k) => k !== '__metadata__')),
    value: fc.jsonValue({ maxDepth: 1 }).map(viaJson),
  }),
);

const pointCaseArb: fc.Arbitrary<PointCase> = fc.oneof(
  { weight: 14, arbitrary: validPointArb.map((value) => ({ value, valid: true })) },
  {
    weight: 1,
    arbitrary: fc.tuple(validPointArb, pointFaultArb).map(([p, fault]) => {
      const value = ownObject(Object.entries(p));
      if (fault.drop) delete value[fault.key];
      else setOwn(value, fault.key, fault.value);
      return { value, valid: false };
    }),
  },
);

const metricsCaseArb: fc.Arbitrary<MetricsCase> = fc.record({
  encoding: fc.constantFrom('json' as const, 'msgpack' as const),
  contentType: fc.oneof(
    { weight: 12, arbitrary: fc.constant('right' as const) },
    { weight: 2, arbitrary: fc.constantFrom('x-msgpack' as const, 'charset' as const) },
    { weight: 1, arbitrary: fc.constantFrom('utf16' as const, 'none' as const, 'text' as const, 'swapped' as const) },
  ),
  wrap: fc.oneof(
    { weight: 6, arbitrary: fc.constantFrom('array' as const, 'points' as const) },
    { weight: 1, arbitrary: fc.constantFrom('pointsExtra' as const, 'scalar' as const, 'object' as const) },
  ),
  points: fc.array(pointCaseArb, { maxLength: 8 }),
  body: fc.oneof(
    { weight: 14, arbitrary: fc.constant({ kind: 'encode' as const }) },
    { weight: 1, arbitrary: fc.constant({ kind: 'bom' as const }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('truncate' as const), at }) },
    {
      weight: 1,
      arbitrary: fc.record({
        kind: fc.constant('append' as const),
        bytes: fc.uint8Array({ minLength: 1, maxLength: 6 }),
      }),
    },
    {
      weight: 1,
      arbitrary: fc.record({ kind: fc.constant('bytes' as const), bytes: fc.uint8Array({ maxLength: 64 }) }),
    },
    { weight: 1, arbitrary: fc.constant({ kind: 'empty' as const }) },
    {
      weight: 1,
      arbitrary: fc.record({ kind: fc.constant('nest' as const), depth: fc.integer({ min: 1, max: 5000 }) }),
    },
  ),
  big: fc.oneof(
    { weight: 60, arbitrary: fc.constant(null) },
    fc.oneof(
      // Many small points: several chunks of 1,000, around the batch limit (4,000).
      fc.record({
        n: fc.integer({ min: 900, max: 4100 }),
        extraKeys: fc.constant(0),
        keyLength: fc.constant(1),
        pad: fc.constant(0),
        seed: fc.integer(),
        bad: fc.option(at, { nil: null }),
      }),
      // Bodies over 1 MiB, read by the chunked scanners (JSON: whitespace; msgpack: long extra keys).
      fc.record({
        n: fc.integer({ min: 150, max: 1600 }),
        extraKeys: fc.integer({ min: 60, max: 66 }),
        keyLength: fc.integer({ min: 100, max: 128 }),
        pad: fc.integer({ min: 0, max: 1000 }),
        seed: fc.integer(),
        bad: fc.option(at, { nil: null }),
      }),
    ),
  ),
});

function bigPoints(b: BigBatch): PointCase[] {
  const random = prng(b.seed);
  const bad = b.bad === null ? -1 : Math.floor(b.bad * b.n);
  return Array.from({ length: b.n }, (_, i) => {
    const value: PointValue = { step: i, trainLoss: random() };
    if (b.extraKeys > 0) {
      const extra: Record<string, number> = {};
      for (let k = 0; k < b.extraKeys; k++) extra[`k${k}`.padEnd(b.keyLength, 'x')] = random();
      value.extra = extra;
    }
    if (i === bad) value.step = String(i);
    return { value, valid: i !== bad && b.extraKeys <= MAX_EXTRA_KEYS };
  });
}

function metricsBody(c: MetricsCase, points: PointCase[]): Uint8Array {
  const values = points.map((p) => p.value);
  let batch: unknown;
  switch (c.wrap) {
    case 'array':
      batch = values;
      break;
    case 'points':
      batch = { points: values };
      break;
    case 'pointsExtra':
      batch = { points: values, run: 'x' };
      break;
    case 'scalar':
      batch = values.length;
      break;
    case 'object':
      batch = values[0] ?? {};
      break;
  }
  if (c.body.kind === 'nest') {
    const d = c.body.depth;
    // Never a valid batch: the innermost array is at least a point.
    return c.encoding === 'json'
      ? Buffer.from(`${'['.repeat(d + 1)}${']'.repeat(d + 1)}`)
      : Buffer.concat([Buffer.alloc(d, 0x91), Uint8Array.of(0x90)]);
  }
  if (c.body.kind === 'bytes') return c.body.bytes;
  if (c.body.kind === 'empty') return new Uint8Array(0);
  let bytes: Uint8Array;
  if (c.encoding === 'msgpack') {
    bytes = pack(batch);
  } else if (c.big && c.big.pad > 0 && Array.isArray(batch)) {
    const sep = `,${' '.repeat(c.big.pad)}`;
    bytes = Buffer.from(`[${values.map((v) => JSON.stringify(v)).join(sep)}]`);
  } else {
    bytes = Buffer.from(JSON.stringify(batch));
  }
  switch (c.body.kind) {
    case 'bom':
      return Buffer.concat([Uint8Array.of(0xef, 0xbb, 0xbf), bytes]);
    case 'truncate':
      return bytes.subarray(0, Math.floor(c.body.at * bytes.length));
    case 'append':
      return Buffer.concat([bytes, c.body.bytes]);
    default:
      return bytes;
  }
}

function metricsContentType(c: MetricsCase): string | null {
  const own = c.encoding === 'json' ? 'application/json' : 'application/msgpack';
  switch (c.contentType) {
    case 'right':
      return own;
    case 'x-msgpack':
      return c.encoding === 'json' ? 'application/json; charset=UTF-8' : 'application/x-msgpack';
    case 'charset':
      return `${own}; charset=utf-8`;
    case 'utf16':
      return `${own}; charset=utf-16`;
    case 'none':
      return null;
    case 'text':
      return 'text/plain';
    case 'swapped':
      return c.encoding === 'json' ? 'application/msgpack' : 'application/json';
  }
}

/**
 * Whether the batch is valid by construction (the gateway must accept it) or invalid (it must refuse); null for
 * arbitrary bytes or bytes appended (whitespace after JSON, say), which may be either.
 */
function metricsValidity(c: MetricsCase, points: PointCase[]): boolean | null {
  if (c.body.kind === 'bytes' || c.body.kind === 'append') return null;
  // A charset parameter means nothing to msgpack; JSON must be UTF-8.
  const typeOk =
    c.contentType === 'right' ||
    c.contentType === 'x-msgpack' ||
    c.contentType === 'charset' ||
    (c.contentType === 'utf16' && c.encoding === 'msgpack');
  const bodyOk = c.body.kind === 'encode' || (c.body.kind === 'bom' && c.encoding === 'json');
  return (
    typeOk &&
    bodyOk &&
    (c.wrap === 'array' || c.wrap === 'points') &&
    points.length <= MAX_POINTS_PER_BATCH &&
    points.every((p) => p.valid && !hasProtoExtra(p.value))
  );
}

/** An `extra` key `__proto__` is refused: copying the point would turn it into a prototype and lose it. */
function hasProtoExtra(point: unknown): boolean {
  const extra = typeof point === 'object' && point !== null ? (point as { extra?: unknown }).extra : undefined;
  return typeof extra === 'object' && extra !== null && Object.hasOwn(extra, '__proto__');
}

/** What the catalog must hold after an accepted batch: the points, sent as `encoding`, ordered by step. */
function expectedSeries(values: unknown[], encoding: 'json' | 'msgpack'): unknown[] {
  const sent = values.map((v) => (encoding === 'json' ? viaJson(v) : v));
  const order = sent.map((v, i) => ({ v, i, step: Number(isRecord(v) ? v.step : Number.NaN) }));
  order.sort((a, b) => a.step - b.step || a.i - b.i);
  // -0 is stored as 0 (SQLite REAL, JSON text of extra); compared after a JSON round trip on both sides.
  return order.map((o) => viaJson(o.v));
}

/** The points arbitrary bytes hold, decoded as the gateway would (an array, or the array of {points}). */
function decodedPoints(encoding: 'json' | 'msgpack', body: Uint8Array): unknown[] {
  let batch: unknown;
  try {
    const bom = body[0] === 0xef && body[1] === 0xbb && body[2] === 0xbf ? 3 : 0;
    batch = encoding === 'json' ? JSON.parse(Buffer.from(body.subarray(bom)).toString('utf8')) : unpack(body);
  } catch {
    return [];
  }
  if (Array.isArray(batch)) return batch;
  return isRecord(batch) && Array.isArray(batch.points) ? batch.points : [];
}

const metricsTarget: FuzzTarget = {
  name: 'metrics-http',
  weight: 16,
  run: (numRuns, seed) =>
    fuzz({
      name: 'metrics-http',
      numRuns,
      seed,
      open: openHttp,
      close: closeHttp,
      arbitrary: metricsCaseArb,
      check: checkMetrics,
      sweep: sweepStore,
    }),
};

async function checkMetrics(env: HttpEnv, c: MetricsCase): Promise<Outcome> {
  const { catalog } = env.gw.context;
  const points = c.big ? bigPoints(c.big) : c.points;
  const body = metricsBody(c, points);
  const run = fresh(env, 'm');
  const type = metricsContentType(c);
  const valid = metricsValidity(c, points);
  const urlPath = `/v1/runs/${run}/metrics`;
  const what = () =>
    `POST ${urlPath} (${type ?? 'no content-type'}, ${c.encoding}` +
    `${c.big ? `, ${points.length} generated points` : ''}) with body ` +
    (c.encoding === 'json' ? show(Buffer.from(body.subarray(0, 600)).toString('utf8')) : hexPreview(body, 300));
  // node:http, not supertest: superagent serialises a Buffer body sent as application/json as JSON itself.
  const answer = await rawRequest(env, 'POST', urlPath, type === null ? {} : { 'content-type': type }, body);
  const outcome = outcomeOf(answer, what);
  const stored = (await catalog.listMetrics(run, { limit: 1_000_000 })).items;
  if (answer.status >= 400) {
    if (valid === true) violated(`${what()}: a valid batch was refused: ${answer.text.slice(0, 400)}`);
    if (stored.length > 0) violated(`${what()}: refused, but ${stored.length} points were stored`);
    if (await catalog.getRun(run)) violated(`${what()}: refused, but run '${run}' was created`);
    return outcome;
  }
  if (answer.status !== 200) violated(`${what()}: answered ${answer.status}`);
  if (valid === false) violated(`${what()}: an invalid batch was accepted: ${answer.text.slice(0, 200)}`);
  const accepted = (answer.json as { accepted?: unknown })?.accepted;
  const sent = c.body.kind === 'bytes' ? decodedPoints(c.encoding, body) : points.map((p) => p.value);
  if (accepted !== sent.length) violated(`${what()}: accepted ${show(accepted)}, the body holds ${sent.length} points`);
  const want = expectedSeries(sent, c.encoding);
  const got = stored.map(viaJson);
  if (!isDeepStrictEqual(got, want)) {
    const i = got.findIndex((g, k) => !isDeepStrictEqual(g, want[k]));
    violated(
      `${what()}: stored points differ from those sent; first at ${i}: stored ${show(got[i])}, sent ${show(want[i])}`,
    );
  }
  return outcome;
}

// ---------------------------------------------------------------------------------------------------------------
// Policies
// ---------------------------------------------------------------------------------------------------------------

const countArb = fc.oneof(fc.integer({ min: 0, max: 1000 }), fc.constantFrom(0, 1_000_000));
const positiveArb = fc.oneof(fc.integer({ min: 1, max: 2 ** 31 }), fc.constant(Number.MAX_SAFE_INTEGER));

const validPolicyArb: fc.Arbitrary<Record<string, unknown>> = fc.record(
  {
    budget: fc.record(
      { maxCheckpoints: fc.option(positiveArb, { nil: null }), maxBytes: fc.option(positiveArb, { nil: null }) },
      { requiredKeys: [] },
    ),
    latest: countArb,
    phase: fc.record(
      {
        count: fc.integer({ min: 1, max: 10 }),
        perPhase: countArb,
        by: fc.constantFrom('auto', 'fraction', 'dynamics'),
      },
      { requiredKeys: [] },
    ),
    change: fc.record(
      { max: countArb, zThreshold: fc.double({ min: 1e-6, max: 1000, noNaN: true }) },
      { requiredKeys: [] },
    ),
    best: fc.option(
      fc.record(
        {
          metric: fc.constantFrom('valLoss', 'trainLoss', 'gradNorm', 'gapIncrement'),
          mode: fc.constantFrom('min', 'max'),
          count: countArb,
        },
        { requiredKeys: [] },
      ),
      { nil: null },
    ),
    every: fc.option(positiveArb, { nil: null }),
    graceSeconds: fc.integer({ min: 0, max: 365 * 86_400 }),
  },
  { requiredKeys: [] },
);

type Level = 'top' | 'budget' | 'phase' | 'change' | 'best';

/** Definitely invalid values for each key of a policy. */
const WRONG: Record<string, readonly unknown[]> = {
  latest: [-1, 1.5, 1_000_001, '3', null, true, [], {}, 1e308],
  graceSeconds: [-1, 365 * 86_400 + 1, 1.5, '60', null, []],
  every: [0, -5, 1.5, 2 ** 53, '1', true, []],
  maxCheckpoints: [0, -5, 1.5, 2 ** 53, '1', true, {}],
  maxBytes: [0, -1, 0.5, 2 ** 64, '1', []],
  count: [0, 11, 2.5, '3', null, -1],
  perPhase: [-1, 1.5, 1_000_001, '2', null],
  by: ['Auto', '', 3, null, ['auto']],
  max: [-1, 1.5, 1_000_001, '4', null],
  zThreshold: [0, -1, 1001, '1', null, 1e308],
  metric: ['loss', 3, null, 'valloss'],
  mode: ['MIN', null, 0],
  budget: [5, 'x', [], null, true],
  phase: [5, 'x', [], null],
  change: [1, 'x', [], null],
  best: [1, 'x', [], true],
};
const LEVEL_KEYS: Record<Level, string[]> = {
  top: ['budget', 'latest', 'phase', 'change', 'best', 'every', 'graceSeconds'],
  budget: ['maxCheckpoints', 'maxBytes'],
  phase: ['count', 'perPhase', 'by'],
  change: ['max', 'zThreshold'],
  best: ['metric', 'mode', 'count'],
};

interface PolicyFault {
  level: Level;
  /** A known key set to a wrong value, or an unknown key. */
  key: string;
  value: unknown;
}

const policyFaultArb: fc.Arbitrary<PolicyFault> = fc.oneof(
  fc.constantFrom<Level>('top', 'budget', 'phase', 'change', 'best').chain((level) =>
    fc.constantFrom(...LEVEL_KEYS[level]).chain((key) => {
      const wrong = key === 'count' && level === 'best' ? WRONG.perPhase : WRONG[key];
      return fc.constantFrom(...wrong).map((value) => ({ level, key, value }));
    }),
  ),
  fc.record({
    level: fc.constantFrom<Level>('top', 'top', 'budget', 'phase', 'change', 'best'),
    key: fc.oneof(
      { weight: 3, arbitrary: fc.constantFrom('__proto__', 'constructor', 'prototype') },
      { weight: 2, arbitrary: fc.constantFrom('toString', 'hasOwnProperty', 'valueOf', 'Latest', 'budgets', '', 'x') },
    ),
    value: fc.oneof(fc.jsonValue({ maxDepth: 1 }).map(viaJson), fc.constant({ latest: 5 })),
  }),
);

function withFault(policy: Record<string, unknown>, fault: PolicyFault): Record<string, unknown> {
  const out = structuredClone(policy);
  let target = out;
  if (fault.level !== 'top') {
    const inner = isRecord(out[fault.level]) ? (out[fault.level] as Record<string, unknown>) : {};
    setOwn(out, fault.level, inner);
    target = inner;
  }
  setOwn(target, fault.key, fault.value);
  return out;
}

type PolicyBody = { kind: 'json'; value: unknown; valid: boolean } | { kind: 'text'; text: string } | { kind: 'empty' };

interface PolicyCase {
  route: 'named' | 'run' | 'simulate';
  /** named: a fresh name, the built-in `default`, or a stored policy; run/simulate: a fresh or an existing run. */
  which: 'fresh' | 'default' | 'existing';
  policy: { value: Record<string, unknown>; valid: boolean };
  /** run and simulate: how the policy is referred to. */
  ref:
    | 'inline'
    | 'name-default'
    | 'name-existing'
    | 'name-unknown'
    | 'name-weird'
    | 'both'
    | 'neither'
    | 'extra-key'
    | 'proto-wrap'
    | 'bare';
  body: 'json' | 'text' | 'empty' | 'scalar' | 'truncated' | 'deep' | 'array';
  text: string;
  depth: number;
  contentType: 'json' | 'json-charset' | 'utf16' | 'text' | 'none';
}

const policyValueArb = fc.oneof(
  { weight: 3, arbitrary: validPolicyArb.map((value) => ({ value, valid: true })) },
  {
    weight: 2,
    arbitrary: fc
      .tuple(validPolicyArb, policyFaultArb)
      .map(([p, fault]) => ({ value: withFault(p, fault), valid: false })),
  },
);

const policyCaseArb: fc.Arbitrary<PolicyCase> = fc.record({
  route: fc.constantFrom('named' as const, 'run' as const, 'simulate' as const),
  which: fc.oneof(
    { weight: 4, arbitrary: fc.constant('fresh' as const) },
    { weight: 2, arbitrary: fc.constant('existing' as const) },
    { weight: 1, arbitrary: fc.constant('default' as const) },
  ),
  policy: policyValueArb,
  ref: fc.oneof(
    { weight: 8, arbitrary: fc.constant('inline' as const) },
    {
      weight: 1,
      arbitrary: fc.constantFrom(
        'name-default' as const,
        'name-existing' as const,
        'name-unknown' as const,
        'name-weird' as const,
      ),
    },
    {
      weight: 1,
      arbitrary: fc.constantFrom(
        'both' as const,
        'neither' as const,
        'extra-key' as const,
        'proto-wrap' as const,
        'bare' as const,
      ),
    },
  ),
  body: fc.oneof(
    { weight: 14, arbitrary: fc.constant('json' as const) },
    {
      weight: 1,
      arbitrary: fc.constantFrom(
        'text' as const,
        'empty' as const,
        'scalar' as const,
        'truncated' as const,
        'deep' as const,
        'array' as const,
      ),
    },
  ),
  text: fc.oneof(fc.string({ maxLength: 30 }), fc.json({ maxDepth: 2 })),
  depth: fc.integer({ min: 1, max: 5000 }),
  contentType: fc.oneof(
    { weight: 12, arbitrary: fc.constant('json' as const) },
    {
      weight: 1,
      arbitrary: fc.constantFrom('json-charset' as const, 'utf16' as const, 'text' as const, 'none' as const),
    },
  ),
});

const FIXED_POLICY = 'fuzz-fixed';
const POLICY_RUN = 'fuzz-policy-run';
const SIM_RUN = 'fuzz-sim-run';

async function openPolicyEnv(): Promise<HttpEnv> {
  const env = await openHttp();
  const ok = (a: Answer, what: string) => {
    if (a.status >= 300) throw new Error(`${what}: ${a.status} ${a.text}`);
  };
  ok(await answerOf(call(env, 'put', `/v1/policies/${FIXED_POLICY}`).send({ latest: 2 })), 'named policy');
  ok(await answerOf(call(env, 'put', `/v1/runs/${POLICY_RUN}`).send({})), 'policy run');
  ok(await answerOf(call(env, 'put', `/v1/runs/${SIM_RUN}`).send({ plannedSteps: 100 })), 'simulation run');
  for (let step = 0; step < 4; step++) {
    const body = encodeSafetensors(
      buildTensors({ tensors: BASE_TENSORS, metadata: null, dataSeed: step, finite: true }),
    );
    ok(
      await rawRequest(
        env,
        'PUT',
        `/v1/runs/${SIM_RUN}/checkpoints/${step * 10}`,
        { 'content-type': MEDIA_TYPES.safetensors },
        body,
      ),
      'checkpoint',
    );
  }
  return env;
}

/** The request body (value or text) of a case, and whether it is valid by construction. */
function policyRequest(c: PolicyCase): { body: PolicyBody; storedRef: unknown } {
  if (c.body === 'empty') return { body: { kind: 'empty' }, storedRef: undefined };
  if (c.body === 'text') return { body: { kind: 'text', text: c.text }, storedRef: undefined };
  if (c.body === 'scalar')
    return { body: { kind: 'text', text: ['1', '"x"', 'null', 'true'][c.depth % 4] }, storedRef: undefined };
  if (c.body === 'deep') {
    const d = c.depth;
    const inner = `${'['.repeat(d)}${']'.repeat(d)}`;
    return {
      body: { kind: 'text', text: c.route === 'named' ? `{"budget":${inner}}` : `{"policy":{"budget":${inner}}}` },
      storedRef: undefined,
    };
  }
  let value: unknown;
  let valid: boolean;
  let storedRef: unknown;
  if (c.route === 'named') {
    value = c.policy.value;
    valid = c.policy.valid;
  } else {
    switch (c.ref) {
      case 'inline':
        value = { policy: c.policy.value };
        valid = c.policy.valid;
        storedRef = value;
        break;
      case 'name-default':
        value = { name: 'default' };
        valid = true;
        storedRef = null;
        break;
      case 'name-existing':
        value = { name: FIXED_POLICY };
        valid = true;
        storedRef = value;
        break;
      case 'name-unknown':
        value = { name: 'no-such-policy' };
        valid = false;
        break;
      case 'name-weird':
        value = { name: ['', '..', '__proto__', 'a/b', '%zz', 'x'.repeat(500)][c.depth % 6] };
        valid = false;
        break;
      case 'both':
        value = { name: FIXED_POLICY, policy: c.policy.value };
        valid = false;
        break;
      case 'neither':
        value = {};
        // An empty simulation body means "the run's own policy".
        valid = c.route === 'simulate';
        break;
      case 'extra-key':
        value = ownObject([
          ['policy', c.policy.value],
          [['x', 'constructor', '__proto__'][c.depth % 3], 1],
        ]);
        valid = false;
        break;
      case 'proto-wrap':
        value = ownObject([['__proto__', { policy: c.policy.value }]]);
        valid = false;
        break;
      case 'bare':
        value = c.policy.value;
        valid = Object.keys(c.policy.value).length === 0 && c.route === 'simulate';
        break;
    }
  }
  if (c.body === 'array') return { body: { kind: 'json', value: [value], valid: false }, storedRef };
  if (c.body === 'truncated') {
    const text = JSON.stringify(value);
    return { body: { kind: 'text', text: text.slice(0, Math.max(0, text.length - 1 - (c.depth % 3))) }, storedRef };
  }
  return { body: { kind: 'json', value, valid }, storedRef };
}

const policiesTarget: FuzzTarget = {
  name: 'policies-http',
  weight: 14,
  run: (numRuns, seed) =>
    fuzz({
      name: 'policies-http',
      numRuns,
      seed,
      open: openPolicyEnv,
      close: closeHttp,
      arbitrary: policyCaseArb,
      check: checkPolicy,
      sweep: sweepStore,
    }),
};

async function checkPolicy(env: HttpEnv, c: PolicyCase): Promise<Outcome> {
  const { catalog } = env.gw.context;
  const { body, storedRef } = policyRequest(c);
  let urlPath: string;
  let name = '';
  let run = '';
  if (c.route === 'named') {
    name = c.which === 'fresh' ? fresh(env, 'pol') : c.which === 'default' ? 'default' : FIXED_POLICY;
    urlPath = `/v1/policies/${name}`;
  } else {
    run = c.which === 'fresh' ? fresh(env, 'pr') : c.route === 'run' ? POLICY_RUN : SIM_RUN;
    urlPath = c.route === 'run' ? `/v1/runs/${run}/policy` : `/v1/runs/${run}/retention/simulate`;
  }
  const method = c.route === 'simulate' ? 'POST' : 'PUT';
  const typeHeader: Record<string, string | null> = {
    json: 'application/json',
    'json-charset': 'application/json; charset=utf-8',
    utf16: 'application/json; charset=utf-16',
    text: 'text/plain',
    none: null,
  };
  const type = typeHeader[c.contentType];
  const bytes =
    body.kind === 'empty' ? null : Buffer.from(body.kind === 'json' ? JSON.stringify(body.value) : body.text);
  const typeOk = c.contentType === 'json' || c.contentType === 'json-charset' || bytes === null || bytes.length === 0;
  const what = () =>
    `${method} ${urlPath} (${type ?? 'no content-type'}) with body ` +
    (bytes === null ? '(none)' : show(bytes.toString('utf8'), 700));

  const policyBefore = name ? await catalog.getPolicy(name) : null;
  const runBefore = run ? await catalog.getRun(run) : null;
  const statusesBefore = run ? (await catalog.listCheckpoints(run)).map((k) => [k.step, k.status, k.pinned]) : [];
  const answer = await rawRequest(env, method, urlPath, type === null ? {} : { 'content-type': type }, bytes);
  const outcome = outcomeOf(answer, what);

  // What the body means, and whether it is valid by construction; unknown for free text.
  let parsed: unknown;
  let valid: boolean | null;
  if (body.kind === 'empty' || (body.kind === 'text' && body.text === '')) {
    parsed = {};
    // An empty policy is valid, an empty simulation request means the run's own policy; {} is no run policy.
    valid = c.route !== 'run' && name !== 'default';
  } else if (body.kind === 'json') {
    parsed = viaJson(body.value);
    valid = body.valid && name !== 'default';
  } else {
    try {
      parsed = JSON.parse(body.text);
      valid = typeof parsed === 'object' && parsed !== null ? null : false;
    } catch {
      valid = false;
    }
  }
  if (!typeOk && bytes !== null && bytes.length > 0) valid = false;
  if (c.route === 'simulate' && c.which === 'fresh') valid = valid === true ? false : valid; // no such run
  if (valid === true && answer.status >= 400)
    violated(`${what()}: a valid request was refused: ${answer.text.slice(0, 400)}`);
  if (valid === false && answer.status < 400)
    violated(`${what()}: an invalid request was accepted: ${answer.text.slice(0, 300)}`);

  // Storage.
  if (c.route === 'named') {
    const after = await catalog.getPolicy(name);
    if (answer.status >= 400) {
      if (!isDeepStrictEqual(after, policyBefore))
        violated(`${what()}: refused, but the stored policy changed to ${show(after)}`);
    } else if (!after || !isDeepStrictEqual(viaJson(after.policy), parsed)) {
      violated(`${what()}: stored as ${show(after?.policy)}, sent ${show(parsed)}`);
    }
  } else {
    const after = await catalog.getRun(run);
    const statuses = (await catalog.listCheckpoints(run)).map((k) => [k.step, k.status, k.pinned]);
    if (c.route === 'simulate' || answer.status >= 400) {
      if (!isDeepStrictEqual(after?.policy, runBefore?.policy) || (runBefore === null) !== (after === null)) {
        violated(
          `${what()}: ${answer.status}, yet the policy went from ${show(runBefore?.policy)} to ${show(after?.policy)}`,
        );
      }
      if (!isDeepStrictEqual(statuses, statusesBefore))
        violated(`${what()}: ${answer.status} but checkpoint statuses changed`);
    } else {
      const want =
        storedRef !== undefined ? viaJson(storedRef) : isRecord(parsed) && parsed.name === 'default' ? null : parsed;
      if (!after || !isDeepStrictEqual(viaJson(after.policy), want)) {
        violated(`${what()}: the run's policy is stored as ${show(after?.policy)}, sent ${show(want)}`);
      }
    }
  }
  return outcome;
}

// ---------------------------------------------------------------------------------------------------------------
// Path parameters
// ---------------------------------------------------------------------------------------------------------------

interface RouteSpec {
  method: 'get' | 'put' | 'post' | 'delete';
  path: string;
  body?: 'empty-object' | 'default-policy' | 'metrics' | 'checkpoint';
  writes?: 'run' | 'checkpoint' | 'metrics' | 'policy' | 'run-policy';
}

const ROUTES: readonly RouteSpec[] = [
  { method: 'get', path: '/v1/runs/:run' },
  { method: 'put', path: '/v1/runs/:run', body: 'empty-object', writes: 'run' },
  { method: 'get', path: '/v1/runs/:run/checkpoints' },
  { method: 'put', path: '/v1/runs/:run/checkpoints/:step', body: 'checkpoint', writes: 'checkpoint' },
  { method: 'get', path: '/v1/runs/:run/checkpoints/:step' },
  { method: 'get', path: '/v1/runs/:run/checkpoints/:step/content' },
  { method: 'post', path: '/v1/runs/:run/checkpoints/:step/pin' },
  { method: 'post', path: '/v1/runs/:run/checkpoints/:step/unpin' },
  { method: 'post', path: '/v1/runs/:run/checkpoints/:step/restore' },
  { method: 'post', path: '/v1/runs/:run/metrics', body: 'metrics', writes: 'metrics' },
  { method: 'get', path: '/v1/runs/:run/metrics' },
  { method: 'get', path: '/v1/runs/:run/trajectory' },
  { method: 'get', path: '/v1/runs/:run/estimate' },
  { method: 'get', path: '/v1/runs/:run/estimate/history' },
  { method: 'put', path: '/v1/runs/:run/policy', body: 'default-policy', writes: 'run-policy' },
  { method: 'post', path: '/v1/runs/:run/retention/simulate', body: 'empty-object' },
  { method: 'get', path: '/v1/policies/:name' },
  { method: 'put', path: '/v1/policies/:name', body: 'empty-object', writes: 'policy' },
  { method: 'delete', path: '/v1/tokens/:id' },
  { method: 'get', path: '/v1/audit?run=:run' },
];

const PATH_CONSTANTS = [
  '%',
  '%zz',
  '%2',
  '%%',
  '%2e%2e',
  '%2F',
  '%00',
  '%C0%AE',
  '%ED%A0%80',
  '..',
  '.',
  'a..b',
  '...',
  'a/b',
  '../x',
  'a%2Fb',
  '\u0000',
  ' ',
  'a b',
  '#',
  '?',
  '\\',
  '~',
  'constructor',
  'toString',
  'hasOwnProperty',
  'valueOf',
  '__proto__',
  'prototype',
  'default',
  'tok_0123456789abcdef',
  'tok_0123456789ABCDEF',
  '-1',
  '01',
  '0',
  '9007199254740991',
  '9007199254740992',
  '99999999999999999999',
  '1e3',
  '0x10',
  '+1',
  '1.0',
  ' 1',
  '١٢٣',
  'Ⅻ',
  'ａ',
  '\u{1F600}',
  '\uD800',
  'a'.repeat(128),
  'a'.repeat(129),
  'run.',
  '-run',
  '.run',
  '_run',
];

const paramArb: fc.Arbitrary<string> = fc.oneof(
  { weight: 4, arbitrary: fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._-]{0,20}$/) },
  { weight: 1, arbitrary: fc.nat().map(String) },
  { weight: 3, arbitrary: fc.constantFrom(...PATH_CONSTANTS) },
  { weight: 2, arbitrary: fc.string({ unit: 'grapheme', maxLength: 20 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 12 }) },
  {
    weight: 2,
    arbitrary: fc.string({
      unit: fc.constantFrom('%', '.', '/', 'a', '2', 'e', 'F', 'z', '\\', '?', '#', '0'),
      maxLength: 12,
    }),
  },
  {
    weight: 1,
    arbitrary: fc.oneof(
      fc.integer({ min: 100, max: 5000 }).map((n) => 'x'.repeat(n)),
      fc.integer({ min: 100, max: 1500 }).map((n) => 'é'.repeat(n)),
      fc.integer({ min: 100, max: 800 }).map((n) => '\u{1F600}'.repeat(n)),
    ),
  },
);

interface PathCase {
  route: number;
  run: string;
  step: string;
  name: string;
  id: string;
  /** component: encodeURIComponent, as a client library does; raw: as is (the URL parser encodes what it must). */
  mode: 'component' | 'raw';
}

const pathCaseArb: fc.Arbitrary<PathCase> = fc.record({
  route: fc.nat({ max: ROUTES.length - 1 }),
  run: paramArb,
  step: fc.oneof(paramArb, fc.nat().map(String)),
  name: paramArb,
  id: fc.oneof(paramArb, fc.stringMatching(/^tok_[0-9a-f]{16}$/)),
  mode: fc.oneof(
    { weight: 3, arbitrary: fc.constant('component' as const) },
    { weight: 1, arbitrary: fc.constant('raw' as const) },
  ),
});

/** Percent-encodes like encodeURIComponent; a lone surrogate becomes U+FFFD first (as UTF-8 encoders do). */
function encodeComponent(s: string): string {
  try {
    return encodeURIComponent(s);
  } catch {
    return encodeURIComponent(Buffer.from(s, 'utf8').toString('utf8'));
  }
}

const decodedAs = (s: string) => Buffer.from(s, 'utf8').toString('utf8');

const PATH_CHECKPOINT = encodeSafetensors([{ name: 'w', dtype: 'F32', shape: [2], data: new Uint8Array(8) }]);

const pathTarget: FuzzTarget = {
  name: 'path-params-http',
  weight: 16,
  run: (numRuns, seed) =>
    fuzz({
      name: 'path-params-http',
      numRuns,
      seed,
      open: openHttp,
      close: closeHttp,
      arbitrary: pathCaseArb,
      check: checkPath,
      sweep: sweepStore,
    }),
};

async function checkPath(env: HttpEnv, c: PathCase): Promise<Outcome> {
  const { catalog } = env.gw.context;
  const route = ROUTES[c.route];
  const enc = c.mode === 'component' ? encodeComponent : (s: string) => s;
  const urlPath = route.path.replace(/:(run|step|name|id)/g, (_m, key: 'run' | 'step' | 'name' | 'id') => enc(c[key]));
  const what = () =>
    `${route.method.toUpperCase()} ${urlPath.length > 300 ? `${urlPath.slice(0, 300)}…` : urlPath} (${c.mode})`;

  const runsBefore = await catalog.countRuns(['*']);
  let test = call(env, route.method, urlPath);
  if (route.body === 'checkpoint')
    test = test.set('content-type', MEDIA_TYPES.safetensors).send(Buffer.from(PATH_CHECKPOINT));
  if (route.body === 'metrics') test = test.send([{ step: 1, trainLoss: 0.5 }]);
  if (route.body === 'empty-object') test = test.send({});
  if (route.body === 'default-policy') test = test.send({ name: 'default' });
  let answer: Answer;
  try {
    answer = await answerOf(test);
  } catch (err) {
    // The client itself would not send this URL: nothing reached the gateway.
    if (err instanceof TypeError || (err instanceof Error && /Invalid URL|unescaped|ERR_/.test(err.message))) {
      return { status: 'not sent' };
    }
    throw err;
  }
  const outcome = outcomeOf(answer, what);
  const runsAfter = await catalog.countRuns(['*']);
  if (answer.status >= 400 && runsAfter !== runsBefore)
    violated(`${what()}: refused, but ${runsAfter - runsBefore} runs were created`);
  if (runsAfter - runsBefore > 1) violated(`${what()}: ${runsAfter - runsBefore} runs were created`);

  if (c.mode === 'component') {
    const run = decodedAs(c.run);
    const step = decodedAs(c.step);
    const name = decodedAs(c.name);
    const id = decodedAs(c.id);
    const usesRun = route.path.includes(':run');
    const used = (['run', 'step', 'name', 'id'] as const).filter((k) => route.path.includes(`:${k}`));
    // An empty segment is another route (GET /v1/runs/ lists runs).
    if (used.some((k) => c[k] === '')) return outcome;
    const invalid =
      (usesRun && !isValidRunId(run)) ||
      (route.path.includes(':step') && !isValidStep(step)) ||
      (route.path.includes(':name') && !isValidPolicyName(name)) ||
      (route.path.includes(':id') && !isValidTokenId(id));
    if (invalid && answer.status < 400) violated(`${what()}: an invalid identifier was accepted (${answer.status})`);
    if (answer.status < 400 && route.writes) {
      const stored =
        route.writes === 'policy'
          ? (await catalog.getPolicy(name)) !== null
          : route.writes === 'checkpoint'
            ? (await catalog.getCheckpoint(run, Number(step))) !== null
            : (await catalog.getRun(run)) !== null;
      const key = route.writes === 'policy' ? name : run;
      if (!stored) violated(`${what()}: answered ${answer.status}, yet nothing is stored as ${show(key)}`);
    }
    if (runsAfter > runsBefore && (!usesRun || !(await catalog.getRun(run)))) {
      violated(`${what()}: a run was created, but not '${run}'`);
    }
  }
  return outcome;
}

// ---------------------------------------------------------------------------------------------------------------

/** Every target, in the order they run. */
export const TARGETS: readonly FuzzTarget[] = [decoderTarget, uploadTarget, metricsTarget, policiesTarget, pathTarget];

/** Runs one target's share of the cases from the run's seed. */
export function runTarget(target: FuzzTarget, numRuns: number, seed: number): Promise<TargetResult> {
  return target.run(numRuns, targetSeed(seed, target.name));
}
