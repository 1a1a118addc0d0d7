import type { CheckpointSummary } from '../../src/model/summary.js';
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Catalog, MetricCursor, NewCheckpoint, NewShard } from '../../src/catalog/catalog.js';
import { CheckpointRecord, MetricPoint, RunRecord } from '../../src/model/records.js';
import { isAppError } from '../../src/errors.js';
import { signal, waitFor, within } from './wait.js';

/** One opened catalog under test. `reopen` (file-backed stores only) opens the same database again. */
export interface OpenedCatalog {
  catalog: Catalog;
  cleanup(): Promise<void>;
  reopen?: () => Promise<Catalog>;
}

/** The behaviour every Catalog backend must show; each backend's test file calls this once per store. */
export function describeCatalogContract(name: string, open: () => Promise<OpenedCatalog>): void {
  describe(`Catalog contract: ${name}`, () => {
    let opened: OpenedCatalog;
    let catalog: Catalog;
    let seq = 0;
    const runId = (label: string) => `${label}-${++seq}`;

    before(async () => {
      opened = await open();
      catalog = opened.catalog;
    });
    after(async () => {
      await opened.catalog.close();
      await opened.cleanup();
    });

    const summaryFor = (step: number): CheckpointSummary => {
      const sketch = new Float64Array(64).map((_, i) => Math.sin(step + i));
      return {
        step,
        spec: { version: 1, k: 64, tensorK: 4 },
        sketch,
        tensors: [],
        tensorSketches: [new Float64Array([step, -1, 0.5, 2]), new Float64Array([1, 2, 3, step])],
        weightNorm: 3 + step,
      };
    };

    const checkpoint = (run: string, step: number, extra: Partial<NewCheckpoint> = {}): NewCheckpoint => ({
      run,
      step,
      uploadId: `u-${run}-${step}`,
      sha256: 'ab'.repeat(32),
      bytes: 1024 + step,
      format: 'safetensors',
      blobKey: `runs/${run}/checkpoints/${String(step).padStart(10, '0')}-u.safetensors`,
      tensors: [
        { name: 'w', dtype: 'F32', shape: [3, 4], norm: 2, mean: 0.1, maxAbs: 1, nanCount: 0, infCount: 0 },
        { name: 'b', dtype: 'F32', shape: [4], norm: 1, mean: 0, maxAbs: 0.5, nanCount: 0, infCount: 0 },
      ],
      metadata: { epoch: '1' },
      summary: summaryFor(step),
      ...extra,
    });

    it('stores summaries with their checkpoint and returns them byte-exact, by step', async () => {
      const run = runId('summary');
      for (const step of [30, 10, 20]) await catalog.insertCheckpoint(checkpoint(run, step));
      const all = await catalog.getSummaries(run);
      assert.deepEqual(
        all.map((s) => s.step),
        [10, 20, 30],
      );
      const expected = summaryFor(20);
      const [got] = await catalog.getSummaries(run, [20]);
      assert.deepEqual(Array.from(got.sketch), Array.from(expected.sketch));
      assert.deepEqual(
        got.tensorSketches.map((t) => Array.from(t)),
        expected.tensorSketches.map((t) => Array.from(t)),
      );
      assert.deepEqual(got.spec, expected.spec);
      assert.equal(got.weightNorm, expected.weightNorm);
      assert.deepEqual(
        got.tensors.map((t) => [t.name, t.count, t.norm]),
        [
          ['w', 12, 2],
          ['b', 4, 1],
        ],
      );
      assert.deepEqual(await catalog.getSummaries(run, []), []);

      // Summaries read before are served again (they never change), and later checkpoints join them.
      await catalog.insertCheckpoint(checkpoint(run, 25));
      assert.deepEqual(
        (await catalog.getSummaries(run)).map((s) => s.step),
        [10, 20, 25, 30],
      );
      assert.deepEqual(
        (await catalog.getSummaries(run, [40, 25, 10, 25])).map((s) => s.step),
        [10, 25],
      );
      assert.deepEqual(Array.from((await catalog.getSummaries(run, [20]))[0].sketch), Array.from(expected.sketch));
    });

    it('stores indicators on checkpoint records', async () => {
      const run = runId('indicators');
      await catalog.insertCheckpoint(checkpoint(run, 1));
      assert.equal((await catalog.getCheckpoint(run, 1))?.indicators, null);
      const indicators = {
        updateNorm: 0.5,
        updateNormPerStep: 0.05,
        relativeChange: 0.01,
        distanceFromStart: 0.5,
        pathLength: 0.5,
        cosinePrev: -0.2,
        topTensors: [{ name: 'w', updateNorm: 0.4, relativeChange: 0.2 }],
      };
      await catalog.setIndicators(run, [{ step: 1, indicators }]);
      assert.deepEqual((await catalog.getCheckpoint(run, 1))?.indicators, indicators);
    });

    it('stores named policies and run policy references', async () => {
      const name = runId('policy');
      const first = await catalog.putPolicy(name, { latest: 2 });
      assert.equal(first.created, true);
      const second = await catalog.putPolicy(name, { latest: 3, budget: { maxCheckpoints: 5 } });
      assert.equal(second.created, false);
      assert.deepEqual((await catalog.getPolicy(name))?.policy, { latest: 3, budget: { maxCheckpoints: 5 } });
      assert.ok((await catalog.listPolicies()).some((p) => p.name === name));
      assert.equal(await catalog.getPolicy(runId('absent')), null);
      const run = runId('with-policy');
      await catalog.ensureRun(run);
      await catalog.setRunPolicy(run, { name });
      assert.deepEqual((await catalog.getRun(run))?.policy, { name });
      await catalog.setRunPolicy(run, { policy: { latest: 1 } });
      assert.deepEqual((await catalog.getRun(run))?.policy, { policy: { latest: 1 } });
      await catalog.setRunPolicy(run, null);
      assert.equal((await catalog.getRun(run))?.policy, null);
    });

    it('records retention outcomes, pins and due deletions', async () => {
      const run = runId('retention');
      for (const step of [1, 2, 3]) await catalog.insertCheckpoint(checkpoint(run, step));
      const fresh = await catalog.getCheckpoint(run, 1);
      assert.deepEqual([fresh?.classes, fresh?.reasons, fresh?.pinned, fresh?.contentAvailable], [[], [], false, true]);
      await catalog.applyRetention(run, [
        {
          step: 1,
          status: 'discarded',
          classes: [],
          reasons: ['evicted'],
          discardedAt: '2026-01-01T00:00:00.000Z',
          deleteAfter: '2026-01-01T01:00:00.000Z',
        },
        {
          step: 2,
          status: 'discarded',
          classes: [],
          reasons: ['evicted'],
          discardedAt: '2026-01-01T00:00:00.000Z',
          deleteAfter: '2099-01-01T00:00:00.000Z',
        },
        { step: 3, status: 'kept', classes: ['latest'], reasons: ['newest'], discardedAt: null, deleteAfter: null },
      ]);
      const [c1, , c3] = await catalog.listCheckpoints(run);
      assert.deepEqual([c1.status, c1.reasons, c1.deleteAfter], ['discarded', ['evicted'], '2026-01-01T01:00:00.000Z']);
      assert.deepEqual([c3.status, c3.classes], ['kept', ['latest']]);
      const due = (await catalog.listDueDeletions('2026-06-01T00:00:00.000Z', 100)).filter((d) => d.run === run);
      assert.deepEqual(
        due.map((d) => d.step),
        [1],
      );
      await catalog.markBlobDeleted(run, 1);
      assert.equal((await catalog.getCheckpoint(run, 1))?.contentAvailable, false);
      assert.deepEqual(
        (await catalog.listDueDeletions('2026-06-01T00:00:00.000Z', 100)).filter((d) => d.run === run),
        [],
      );
      await catalog.setPinned(run, 3, true);
      assert.equal((await catalog.getCheckpoint(run, 3))?.pinned, true);
    });

    it('aggregates a metric per checkpoint interval in the database', async () => {
      const run = runId('intervals');
      for (const step of [10, 20, 30]) await catalog.insertCheckpoint(checkpoint(run, step));
      await catalog.appendMetrics(run, [
        { step: 5, trainLoss: 1, valLoss: 9 },
        { step: 10, trainLoss: 3 },
        { step: 15, trainLoss: 2, valLoss: 7 },
        { step: 20, valLoss: 6 },
        { step: 31, trainLoss: 8 },
      ]);
      assert.deepEqual(await catalog.metricAtCheckpoints(run, 'trainLoss', 'mean'), [
        { step: 10, value: 2 },
        { step: 20, value: 2 },
        { step: 30, value: null },
      ]);
      assert.deepEqual(await catalog.metricAtCheckpoints(run, 'valLoss', 'last'), [
        { step: 10, value: 9 },
        { step: 20, value: 6 },
        { step: 30, value: null },
      ]);
    });

    it('stores estimate state per run, replacing it', async () => {
      const run = runId('estimate');
      assert.equal(await catalog.getEstimateState(run), null);
      assert.equal(await catalog.estimateStateVersion(run), null);
      assert.equal(await catalog.putEstimateState(run, { n: 1, sums: [1, 2] }), 1);
      assert.equal(await catalog.putEstimateState(run, { n: 2, sums: [3, 4] }), 2);
      assert.deepEqual(await catalog.getEstimateState(run), { state: { n: 2, sums: [3, 4] }, version: 2 });
      assert.equal(await catalog.estimateStateVersion(run), 2);
    });

    it('keeps one calibration scale per run, and lists the other runs of its group', async () => {
      const group = runId('group');
      const [s1, s2, s3] = [runId('s1'), runId('s2'), runId('s3')];
      assert.deepEqual(await catalog.siblingScales(group, s1, 10), []);
      await catalog.putCalibrationScale(s1, { group, scale: 0.1, points: 4 });
      await catalog.putCalibrationScale(s2, { group, scale: 0.2, points: 5 });
      await catalog.putCalibrationScale(s3, { group: `${group}-other`, scale: 9, points: 5 });
      assert.deepEqual((await catalog.siblingScales(group, 'nobody', 10)).sort(), [0.1, 0.2]);
      assert.deepEqual(await catalog.siblingScales(group, s2, 10), [0.1]);
      await catalog.putCalibrationScale(s1, { group, scale: 0.15, points: 6 });
      assert.deepEqual((await catalog.siblingScales(group, 'nobody', 10)).sort(), [0.15, 0.2], 'replaced, not added');
      assert.equal((await catalog.siblingScales(group, 'nobody', 1)).length, 1);
    });

    it('ping succeeds', async () => {
      await catalog.ping();
    });

    it('putRun creates, then updates only the fields given', async () => {
      const id = runId('put');
      const first = await catalog.putRun(id, { plannedSteps: 1000, trainSize: 60000, tags: { a: '1' } });
      assert.equal(first.created, true);
      assert.deepEqual(
        { ...first.run, createdAt: undefined, updatedAt: undefined },
        {
          id,
          plannedSteps: 1000,
          trainSize: 60000,
          allowShapeChange: false,
          tags: { a: '1' },
          calibrationGroup: null,
          policy: null,
          createdAt: undefined,
          updatedAt: undefined,
        },
      );
      RunRecord.parse(first.run);

      // updatedAt has millisecond resolution: let the clock pass the first write's stamp.
      await waitFor(() => new Date().toISOString() > first.run.updatedAt, {
        what: `the clock to pass ${first.run.updatedAt}`,
        intervalMs: 1,
      });
      const second = await catalog.putRun(id, { allowShapeChange: true, trainSize: null });
      assert.equal(second.created, false);
      assert.equal(second.run.plannedSteps, 1000, 'absent field kept');
      assert.deepEqual(second.run.tags, { a: '1' }, 'absent tags kept');
      assert.equal(second.run.trainSize, null, 'explicit null clears');
      assert.equal(second.run.allowShapeChange, true);
      assert.equal(second.run.createdAt, first.run.createdAt);
      assert.ok(second.run.updatedAt > first.run.updatedAt, 'updatedAt bumped');

      const third = await catalog.putRun(id, { tags: { b: '2' } });
      assert.deepEqual(third.run.tags, { b: '2' }, 'tags replaced as a whole');
      assert.deepEqual(await catalog.getRun(id), third.run);
      assert.equal((await catalog.putRun(id, { calibrationGroup: 'g' })).run.calibrationGroup, 'g');
      assert.equal((await catalog.putRun(id, { tags: {} })).run.calibrationGroup, 'g', 'absent group kept');
      assert.equal((await catalog.putRun(id, { calibrationGroup: null })).run.calibrationGroup, null);
    });

    it('putRun with no fields creates a run with defaults', async () => {
      const id = runId('empty');
      const { run, created } = await catalog.putRun(id, {});
      assert.equal(created, true);
      assert.equal(run.plannedSteps, null);
      assert.equal(run.trainSize, null);
      assert.equal(run.allowShapeChange, false);
      assert.deepEqual(run.tags, {});
    });

    it('ensureRun creates once and never overwrites', async () => {
      const id = runId('ensure');
      const a = await catalog.ensureRun(id);
      RunRecord.parse(a);
      const b = await catalog.ensureRun(id);
      assert.deepEqual(b, a);
      await catalog.putRun(id, { plannedSteps: 7 });
      assert.equal((await catalog.ensureRun(id)).plannedSteps, 7);
      const racing = runId('ensure-race');
      const many = await Promise.all([1, 2, 3].map(() => catalog.ensureRun(racing)));
      assert.deepEqual(many[1], many[0]);
      assert.deepEqual(many[2], many[0]);
    });

    it('getRun returns null for a missing run', async () => {
      assert.equal(await catalog.getRun('no-such-run'), null);
    });

    it('listRuns pages by id with `after`', async () => {
      const prefix = `page${++seq}`;
      const ids = ['c', 'a', 'e', 'b', 'd'].map((s) => `${prefix}-${s}`);
      for (const id of ids) await catalog.ensureRun(id);
      const sorted = [...ids].sort();
      const collected: string[] = [];
      let after: string | undefined = `${prefix}-`;
      for (;;) {
        const page = await catalog.listRuns({ limit: 2, after });
        const mine = page.filter((r) => r.id.startsWith(`${prefix}-`));
        collected.push(...mine.map((r) => r.id));
        if (mine.length < 2) break;
        after = page[page.length - 1].id;
      }
      assert.deepEqual(collected, sorted);
      const all = await catalog.listRuns({ limit: 1000 });
      assert.deepEqual(
        all.map((r) => r.id),
        all.map((r) => r.id).sort(),
        'ordered by id',
      );
    });

    it('insertCheckpoint inserts once; a duplicate gets the existing record', async () => {
      const run = runId('ckpt');
      await catalog.ensureRun(run);
      const step = 2 ** 40; // beyond 32 bits
      assert.deepEqual(await catalog.insertCheckpoint(checkpoint(run, step)), { inserted: true });

      const dup = await catalog.insertCheckpoint(checkpoint(run, step, { uploadId: 'other', sha256: 'cd'.repeat(32) }));
      assert.equal(dup.inserted, false);
      assert.ok(!dup.inserted);
      const existing = CheckpointRecord.parse(dup.existing);
      assert.equal(existing.uploadId, `u-${run}-${step}`, 'the first writer wins');
      assert.equal(existing.step, step);
      assert.equal(existing.status, 'kept');
      assert.deepEqual(existing.tensors, checkpoint(run, step).tensors);
      assert.deepEqual(existing.metadata, { epoch: '1' });
      assert.deepEqual(await catalog.getCheckpoint(run, step), existing);
      assert.equal(await catalog.getCheckpoint(run, step + 1), null);
    });

    it('concurrent inserts of one step resolve to exactly one winner', async () => {
      const run = runId('race');
      await catalog.ensureRun(run);
      const results = await Promise.all(
        Array.from({ length: 8 }, (_, i) => catalog.insertCheckpoint(checkpoint(run, 5, { uploadId: `u${i}` }))),
      );
      const winners = results.filter((r) => r.inserted);
      assert.equal(winners.length, 1);
      const stored = await catalog.getCheckpoint(run, 5);
      assert.ok(stored);
      for (const r of results) if (!r.inserted) assert.deepEqual(r.existing, stored);
    });

    it('listCheckpoints orders by step and filters by status', async () => {
      const run = runId('list');
      await catalog.ensureRun(run);
      for (const step of [30, 10, 20])
        await catalog.insertCheckpoint(checkpoint(run, step, { metadata: null, format: 'native' }));
      await catalog.insertCheckpoint(checkpoint(runId('other'), 15));
      const all = await catalog.listCheckpoints(run, { tensors: true });
      assert.deepEqual(
        all.map((c) => c.step),
        [10, 20, 30],
      );
      const lean = await catalog.listCheckpoints(run);
      assert.deepEqual(
        lean,
        all.map(({ tensors, ...rest }) => rest),
        'without tensors: everything else',
      );
      assert.deepEqual(
        (await catalog.listCheckpoints(run, { afterStep: 10, limit: 1 })).map((c) => c.step),
        [20],
      );
      assert.deepEqual(
        (await catalog.listCheckpoints(run, { afterStep: 30, limit: 5 })).map((c) => c.step),
        [],
      );
      for (const c of all) {
        CheckpointRecord.parse(c);
        assert.equal(c.metadata, null);
        assert.equal(c.format, 'native');
      }
      assert.equal((await catalog.listCheckpoints(run, { status: 'kept' })).length, 3);
      assert.deepEqual(await catalog.listCheckpoints(run, { status: 'discarded' }), []);
      assert.deepEqual(await catalog.listCheckpoints('no-such-run'), []);
    });

    it('metrics: append, order by (step, arrival), step filters, limit, extra, absent fields omitted', async () => {
      const run = runId('metrics');
      await catalog.ensureRun(run);
      const points: MetricPoint[] = [
        { step: 2, trainLoss: 0.5, lr: 1e-3, batchSize: 32 },
        { step: 1, trainLoss: 0.9 },
        { step: 2, valLoss: 0.6, extra: { acc: 0.75, 'top-5': 0.9 } },
        {
          step: 3,
          trainLoss: 0.4,
          valLoss: 0.45,
          lr: 5e-4,
          batchSize: 64,
          gradNorm: 1.5,
          gradVariance: 12.25,
          updateNorm: 0.01,
          gapIncrement: -1e-6,
        },
      ];
      assert.equal(await catalog.appendMetrics(run, points), 4);
      assert.equal(await catalog.appendMetrics(run, []), 0);

      const got = (await catalog.listMetrics(run, { limit: 100 })).items;
      assert.deepEqual(got, [points[1], points[0], points[2], points[3]]);
      for (const p of got) {
        MetricPoint.parse(p);
        for (const v of Object.values(p)) assert.notEqual(v, null, 'no nulls');
      }
      assert.deepEqual(
        (await catalog.listMetrics(run, { fromStep: 2, limit: 100 })).items.map((p) => p.step),
        [2, 2, 3],
      );
      assert.deepEqual(
        (await catalog.listMetrics(run, { toStep: 2, limit: 100 })).items.map((p) => p.step),
        [1, 2, 2],
      );
      assert.deepEqual((await catalog.listMetrics(run, { fromStep: 2, toStep: 2, limit: 1 })).items, [points[0]]);
      assert.deepEqual(await catalog.listMetrics('no-such-run', { limit: 10 }), { items: [], next: null });
    });

    // Its speed is measured by scripts/bench-catalog.ts.
    it('appends 100,000 points in one call and reads them back in order', async () => {
      const run = runId('bulk');
      await catalog.ensureRun(run);
      const n = 100_000;
      const points: MetricPoint[] = Array.from({ length: n }, (_, i) => ({
        step: Math.floor(i / 2),
        trainLoss: 1 / (i + 1),
        lr: 1e-3,
        batchSize: 128,
        gradNorm: i % 3 === 0 ? 0.5 : undefined,
      }));
      for (const p of points) if (p.gradNorm === undefined) delete p.gradNorm;
      assert.equal(await catalog.appendMetrics(run, points), n);
      const back = (await catalog.listMetrics(run, { limit: n + 10 })).items;
      assert.equal(back.length, n);
      assert.deepEqual(back, points);
    });

    it('exclusive: one holder of a key at a time, in arrival order; other keys do not wait', async () => {
      const key = runId('lock');
      const entered: number[] = [];
      let inside = 0;
      let most = 0;
      const release = signal();
      const holders = Array.from({ length: 5 }, (_, i) =>
        catalog.exclusive(key, async () => {
          entered.push(i);
          inside++;
          most = Math.max(most, inside);
          await (i === 0 ? release.promise : sleep(2));
          inside--;
          return i;
        }),
      );
      await waitFor(() => entered.length === 1, { what: 'the first holder to enter' });
      const other = await within(
        catalog.exclusive(runId('other-lock'), async () => 'free'),
        { what: 'a second key while the first is held' },
      );
      assert.equal(other, 'free');
      assert.deepEqual(entered, [0], 'the others wait for the first');
      release.resolve();
      assert.deepEqual(await Promise.all(holders), [0, 1, 2, 3, 4]);
      assert.deepEqual(entered, [0, 1, 2, 3, 4], 'in arrival order');
      assert.equal(most, 1, 'never two inside');
    });

    it("exclusive: the work's own error comes back as thrown, and the key is free again", async () => {
      const key = runId('lock-throw');
      const boom = new Error('work failed');
      await assert.rejects(
        catalog.exclusive(key, async () => {
          throw boom;
        }),
        (err: unknown) => err === boom,
      );
      assert.equal(await catalog.exclusive(key, async () => 7), 7);
      assert.deepEqual(await catalog.tryExclusive(key, async () => 8), { ran: true, value: 8 });
    });

    it('tryExclusive: does not run (nor wait) while the key is held, runs once it is free', async () => {
      const key = runId('lease');
      const entered = signal();
      const release = signal();
      const holder = catalog.exclusive(key, async () => {
        entered.resolve();
        await release.promise;
        return 'held';
      });
      await entered.promise;
      let ran = false;
      const attempt = await within(
        catalog.tryExclusive(key, async () => {
          ran = true;
        }),
        { what: 'tryExclusive on a held key to answer' },
      );
      assert.deepEqual(attempt, { ran: false });
      assert.equal(ran, false);
      release.resolve();
      assert.equal(await holder, 'held');
      assert.deepEqual(await catalog.tryExclusive(key, async () => 5), { ran: true, value: 5 });

      // A tryExclusive holder keeps the key from other tries too.
      const leaseRelease = signal();
      const lease = catalog.tryExclusive(key, () => leaseRelease.promise.then(() => 'lease'));
      await waitFor(async () => (await catalog.tryExclusive(key, async () => 0)).ran === false, {
        what: 'the lease to be held',
      });
      leaseRelease.resolve();
      assert.deepEqual(await lease, { ran: true, value: 'lease' });
    });

    it('metric cursor pages over many points of one step yield each point once, in order', async () => {
      const run = runId('cursor');
      await catalog.ensureRun(run);
      // 2,500 points at step 7 (more than one insert chunk), a few before and after, arriving interleaved.
      const points: MetricPoint[] = [];
      for (let i = 0; i < 2530; i++) {
        const step = i % 100 === 1 ? 6 : i % 100 === 2 ? 8 : 7;
        points.push({ step, trainLoss: i });
      }
      await catalog.appendMetrics(run, points.slice(0, 1700));
      await catalog.appendMetrics(run, points.slice(1700));
      const expected = [...points].sort((a, b) => a.step - b.step); // stable: arrival order within a step

      const read = async (query: { fromStep?: number; toStep?: number }, limit: number) => {
        const items: MetricPoint[] = [];
        let after: MetricCursor | undefined;
        for (let pages = 0; ; pages++) {
          assert.ok(pages < 1000, 'paging ends');
          const page = await catalog.listMetrics(run, { ...query, limit, after });
          assert.ok(page.items.length <= limit);
          items.push(...page.items);
          if (page.next === null) return items;
          after = page.next;
        }
      };
      assert.deepEqual(await read({}, 97), expected);
      assert.deepEqual(await read({}, 2530), expected, 'a page exactly as long as the rest');
      assert.deepEqual(
        await read({ fromStep: 7, toStep: 7 }, 100),
        expected.filter((p) => p.step === 7),
      );
    });

    it('estimate state versions: per run, one more per put, distinct under concurrent puts; folds recorded', async () => {
      const [a, b, c] = [runId('version'), runId('version'), runId('version')];
      assert.equal(await catalog.putEstimateState(a, { n: 1 }), 1);
      assert.equal(await catalog.putEstimateState(b, { n: 1 }), 1);
      assert.equal(await catalog.putEstimateState(a, { n: 2 }), 2);
      assert.equal(await catalog.estimateStateVersion(a), 2);
      assert.equal(await catalog.estimateStateVersion(b), 1);

      const versions = await Promise.all(Array.from({ length: 8 }, (_, i) => catalog.putEstimateState(c, { n: i })));
      assert.deepEqual(
        [...versions].sort((x, y) => x - y),
        [1, 2, 3, 4, 5, 6, 7, 8],
      );
      const last = await catalog.getEstimateState(c);
      assert.equal(last?.version, 8);
      assert.deepEqual(last?.state, { n: versions.indexOf(8) }, 'the state of the put that got the last version');

      assert.equal(await catalog.putEstimateState(a, { n: 3 }, { key: 'batch-1', points: 2 }), 3);
      assert.deepEqual(await catalog.batchProgress(a, 'batch-1'), { stored: 0, folded: true });
      assert.deepEqual(await catalog.batchProgress(b, 'batch-1'), { stored: 0, folded: false });
      assert.equal(
        await catalog.putEstimateState(a, { n: 4 }, { key: 'batch-1', points: 2 }),
        4,
        'a repeat is harmless',
      );
    });

    it('ids sort and compare byte-wise (B < a), in listings, paging and policies', async () => {
      const prefix = `bytes${++seq}`;
      const suffixes = ['a', 'B', 'b', 'A', '_', '.', '0', 'Z', 'z', '-', 'a-b', 'aB', 'a_b', 'ab'];
      const ids = suffixes.map((s) => `${prefix}-${s}`);
      for (const id of ids) await catalog.ensureRun(id);
      const bytewise = [...ids].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)));
      const listed = (await catalog.listRuns({ limit: 1000, after: `${prefix}-` }))
        .map((r) => r.id)
        .filter((id) => id.startsWith(`${prefix}-`));
      assert.deepEqual(listed, bytewise);
      const paged: string[] = [];
      let after = `${prefix}-`;
      for (;;) {
        const page = (await catalog.listRuns({ limit: 3, after })).filter((r) => r.id.startsWith(`${prefix}-`));
        paged.push(...page.map((r) => r.id));
        if (page.length < 3) break;
        after = page[page.length - 1].id;
      }
      assert.deepEqual(paged, bytewise);

      const names = [`${prefix}-b`, `${prefix}-B`, `${prefix}-a`];
      for (const name of names) await catalog.putPolicy(name, { latest: 1 });
      assert.deepEqual(
        (await catalog.listPolicies()).map((p) => p.name).filter((n) => n.startsWith(`${prefix}-`)),
        [`${prefix}-B`, `${prefix}-a`, `${prefix}-b`],
      );
    });

    it('run scopes: exact ids and prefixes, case-sensitive, with _ and % taken literally', async () => {
      const p = `scope${++seq}`;
      const ids = [`${p}-a_b`, `${p}-axb`, `${p}-A_b`, `${p}-a%c`, `${p}-abc`, `${p}-ab`];
      for (const id of ids) await catalog.ensureRun(id);
      const within = async (scope: string[]) =>
        (await catalog.listRuns({ limit: 1000, scope })).map((r) => r.id).sort();
      assert.deepEqual(await within([`${p}-a_*`]), [`${p}-a_b`]);
      assert.deepEqual(await within([`${p}-a%*`]), [`${p}-a%c`]);
      assert.deepEqual(await within([`${p}-A*`]), [`${p}-A_b`]);
      assert.deepEqual(await within([`${p}-ab`]), [`${p}-ab`], 'an exact id is not a prefix');
      assert.deepEqual(await within([`${p}-ab*`, `${p}-axb`]), [`${p}-ab`, `${p}-abc`, `${p}-axb`]);
      assert.deepEqual(await within([`${p}-AB`]), []);
      assert.equal(await catalog.countRuns([`${p}-a*`]), 5);
      assert.equal(await catalog.countRuns(['*']), (await catalog.listRuns({ limit: 100_000 })).length);
    });

    it('audit batches and IN lists larger than the bound-parameter limits', async () => {
      const run = runId('many');
      const entries = Array.from({ length: 11_000 }, (_, i) => ({
        actor: 'contract',
        action: 'checkpoint.discard' as const,
        run,
        step: i,
        details: { i },
      }));
      await catalog.appendAudit(entries);
      const stored: number[] = [];
      let after: number | undefined;
      for (;;) {
        const page = await catalog.listAudit({ limit: 5000, run, after });
        stored.push(...page.map((e) => e.step ?? -1));
        if (page.length < 5000) break;
        after = page[page.length - 1].id;
      }
      assert.deepEqual(
        stored,
        entries.map((e) => e.step),
      );

      for (const step of [5, 1500, 2999]) await catalog.insertCheckpoint(checkpoint(run, step));
      const wanted = Array.from({ length: 3000 }, (_, i) => 2999 - i);
      assert.deepEqual(
        (await catalog.getSummaries(run, wanted)).map((s) => s.step),
        [5, 1500, 2999],
      );
    });

    it('sharded steps: staging is unique per file, the commit links the files atomically, live files and abandoned steps', async () => {
      const run = runId('shards');
      const shard = (file: string, tensor: string, extra: Partial<NewShard> = {}): NewShard => ({
        run,
        step: 5,
        file,
        shardCount: 2,
        uploadId: `s-${file}`,
        sha256: 'cd'.repeat(32),
        bytes: 100,
        format: 'safetensors',
        blobKey: `runs/${run}/checkpoints/0000000005-s-${file}/${file}`,
        tensors: [{ name: tensor, dtype: 'F32', shape: [4], norm: 1, mean: 0, maxAbs: 1, nanCount: 0, infCount: 0 }],
        metadata: { format: 'pt' },
        summary: summaryFor(5),
        ...extra,
      });
      assert.deepEqual(await catalog.stageShard(shard('b.safetensors', 'b')), { inserted: true });
      const twice = await catalog.stageShard(shard('b.safetensors', 'other', { sha256: 'ef'.repeat(32) }));
      assert.equal(twice.inserted, false);
      assert.equal(!twice.inserted && twice.existing.sha256, 'cd'.repeat(32));
      await catalog.stageShard(shard('a.safetensors', 'a'));
      const staged = await catalog.listShards(run, 5, { summaries: true });
      assert.deepEqual(
        staged.map((s) => [s.file, s.checkpointUploadId, s.tensors[0].name]),
        [
          ['a.safetensors', null, 'a'],
          ['b.safetensors', null, 'b'],
        ],
      );
      assert.deepEqual(Array.from(staged[0].summary?.sketch ?? []), Array.from(summaryFor(5).sketch));
      assert.equal((await catalog.listShards(run, 5))[0].summary, null);
      assert.deepEqual([...(await catalog.liveShardUploads(run))].sort(), ['5/s-a.safetensors', '5/s-b.safetensors']);
      // Abandoned: the latest file of the step arrived before the cutoff.
      const future = new Date(Date.now() + 60_000).toISOString();
      assert.ok((await catalog.abandonedShardSteps(future, 100)).some((s) => s.run === run && s.step === 5));
      assert.ok(!(await catalog.abandonedShardSteps('2000-01-01T00:00:00.000Z', 100)).some((s) => s.run === run));

      await catalog.ensureRun(run);
      const row = checkpoint(run, 5, {
        uploadId: 'step-5',
        blobKey: `runs/${run}/checkpoints/0000000005-step-5.index`,
      });
      assert.deepEqual(await catalog.commitShards(row), { inserted: true });
      assert.deepEqual(
        (await catalog.listShards(run, 5)).map((s) => s.checkpointUploadId),
        ['step-5', 'step-5'],
      );
      assert.equal((await catalog.getCheckpoint(run, 5))?.uploadId, 'step-5');
      assert.equal((await catalog.getSummaries(run, [5])).length, 1);
      assert.equal((await catalog.commitShards({ ...row, uploadId: 'late' })).inserted, false);
      // Committed files are no longer staged: nothing to drop, nothing abandoned; they live with the step.
      assert.deepEqual(await catalog.dropStagedShards(run, 5), []);
      assert.ok(!(await catalog.abandonedShardSteps(future, 100)).some((s) => s.run === run));
      assert.equal((await catalog.liveShardUploads(run)).size, 2);
      // A staged file of another step is dropped with its key.
      await catalog.stageShard(shard('c.safetensors', 'c', { step: 6 }));
      assert.deepEqual(await catalog.dropStagedShards(run, 6), [
        `runs/${run}/checkpoints/0000000005-s-c.safetensors/c.safetensors`,
      ]);
      assert.deepEqual(await catalog.listShards(run, 6), []);
    });

    it('failures surface as catalog_unavailable', async () => {
      const doomed = await open();
      await doomed.catalog.close();
      await doomed.catalog.close(); // closing again is harmless
      try {
        await assert.rejects(
          doomed.catalog.getRun('x'),
          (err: unknown) => isAppError(err) && err.code === 'catalog_unavailable',
        );
        await assert.rejects(
          doomed.catalog.ping(),
          (err: unknown) => isAppError(err) && err.code === 'catalog_unavailable',
        );
      } finally {
        await doomed.cleanup();
      }
    });

    it('data survives close and reopen; reopening re-runs migrations as a no-op', async (t) => {
      const reopen = opened.reopen;
      if (!reopen) return t.skip('in-memory store');
      const run = runId('durable');
      await catalog.putRun(run, { plannedSteps: 42, tags: { k: 'v' } });
      await catalog.insertCheckpoint(checkpoint(run, 1));
      await catalog.appendMetrics(run, [{ step: 1, trainLoss: 1 }]);

      // A second connection while the first is open: migrations see a current schema.
      const second = await reopen();
      assert.equal((await second.getRun(run))?.plannedSteps, 42);
      await second.close();

      await catalog.close();
      catalog = await reopen();
      opened.catalog = catalog;
      assert.deepEqual((await catalog.getRun(run))?.tags, { k: 'v' });
      assert.equal((await catalog.listCheckpoints(run)).length, 1);
      assert.deepEqual((await catalog.listMetrics(run, { limit: 10 })).items, [{ step: 1, trainLoss: 1 }]);
    });
  });
}
