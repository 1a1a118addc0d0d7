/**
 * Property-based fuzzing of every input parser (issue 11): the checkpoint decoders (directly and over HTTP),
 * metric batches, policies and path parameters, 10,000 cases from a fixed seed. The generators and the
 * invariants live in scripts/lib/fuzz-targets.ts; `npx tsx scripts/fuzz.ts --cases 100000` runs the same at scale.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  FUZZ_SEED,
  TARGETS,
  TEST_CASES,
  describeResult,
  planCases,
  runTarget,
  shortFailure,
} from '../scripts/lib/fuzz-targets.js';

describe(`fuzzing the input parsers (seed ${FUZZ_SEED}, ${TEST_CASES} cases)`, () => {
  const plan = planCases(TEST_CASES);
  for (const target of TARGETS) {
    const cases = plan.get(target.name) ?? 0;
    it(`${target.name}: ${cases} cases keep every invariant`, async (t) => {
      const result = await runTarget(target, cases, FUZZ_SEED);
      for (const line of describeResult({ ...result, failure: null })) t.diagnostic(line);
      assert.equal(result.serverErrors, 0, 'no 5xx answers');
      if (result.failure) assert.fail(shortFailure(result.failure));
    });
  }
});
