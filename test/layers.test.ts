import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';
import { findCycle, importEdges, layerGraph, violations } from '../scripts/lib/import-graph.js';

const root = path.resolve(import.meta.dirname, '..');

describe('layer rules (docs/architecture.md §2)', () => {
  it('every import stays within what its layer may import', async () => {
    const edges = await importEdges(root);
    assert.ok(edges.length > 50, `found only ${edges.length} cross-layer imports: is the scanner still reading src/?`);
    const bad = violations(edges);
    assert.deepEqual(
      bad.map((v) => `${v.file}: '${v.specifier}' (${v.why})`),
      [],
    );
  });

  it('the layer graph has no cycle', async () => {
    assert.equal(findCycle(layerGraph(await importEdges(root))), null);
  });

  it('catches an upward import and a cycle', () => {
    const edge = { file: 'src/catalog/x.ts', specifier: '../runs/y.js', typeOnly: false };
    assert.equal(violations([{ ...edge, from: 'catalog', to: 'runs' }]).length, 1);
    assert.equal(violations([{ ...edge, from: 'sdk', to: 'errors' }]).length, 1);
    assert.equal(violations([{ ...edge, from: 'http', to: 'catalog', typeOnly: true }]).length, 1);
    assert.equal(violations([{ ...edge, from: 'http', to: 'runs' }]).length, 0);
    const graph = new Map([
      ['a', new Set(['b'])],
      ['b', new Set(['a'])],
    ]);
    assert.deepEqual(findCycle(graph), ['a', 'b', 'a']);
  });
});
