/**
 * Prints the gateway's import graph by layer, bottom to top, and any import that breaks the layer rules
 * (docs/architecture.md §2). Exit code 1 when there is one. `npx tsx scripts/import-graph.ts`
 */
import path from 'node:path';
import { LAYERS, findCycle, importEdges, layerGraph, violations } from './lib/import-graph.js';

const root = path.resolve(import.meta.dirname, '..');
const edges = await importEdges(root);
const graph = layerGraph(edges);
const width = Math.max(...[...graph.keys()].map((l) => l.length));
const order = new Map(LAYERS.map((l, i) => [l.layer, i]));
for (const [layer, targets] of graph) {
  const sorted = [...targets].sort((a, b) => (order.get(a) ?? 99) - (order.get(b) ?? 99));
  const typeOnly = new Set(
    sorted.filter((t) => edges.filter((e) => e.from === layer && e.to === t).every((e) => e.typeOnly)),
  );
  const list = sorted.map((t) => (typeOnly.has(t) ? `${t} (types)` : t)).join(', ') || '—';
  console.log(`${layer.padEnd(width)}  → ${list}`);
}
const cycle = findCycle(graph);
const bad = violations(edges);
console.log(`\ncycles: ${cycle ? cycle.join(' → ') : 'none'}`);
console.log(`imports against the layer rules: ${bad.length === 0 ? 'none' : bad.length}`);
for (const v of bad) console.log(`  ${v.file}: '${v.specifier}' — ${v.why}`);
process.exitCode = cycle || bad.length ? 1 : 0;
