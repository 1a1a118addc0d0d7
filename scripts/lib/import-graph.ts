import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';

/**
 * The import graph of the gateway by layer (docs/architecture.md §2). A layer is a folder under `src/`, a
 * top-level file of `src/` (`errors`, `config`, …), or `sdk` (the `@trajgate/sdk` package). Each layer may
 * import the layers listed for it; `http` may also import types (`import type`) from the layers its
 * service returns results of. The list is ordered bottom to top and a layer names only layers before it,
 * so a graph that keeps the rules has no upward edge and no cycle.
 */
export const LAYERS: readonly { layer: string; may: readonly string[]; typesFrom?: readonly string[] }[] = [
  { layer: 'sdk', may: [] },
  { layer: 'util', may: [] },
  { layer: 'errors', may: ['sdk'] },
  { layer: 'model', may: ['sdk'] },
  { layer: 'observability', may: [] },
  { layer: 'config', may: ['errors'] },
  { layer: 'logger', may: ['config'] },
  { layer: 'trajectory', may: ['sdk', 'util', 'errors', 'model'] },
  { layer: 'storage', may: ['sdk', 'util', 'errors', 'config'] },
  { layer: 'catalog', may: ['sdk', 'util', 'errors', 'model'] },
  { layer: 'ingest', may: ['sdk', 'util', 'errors', 'model', 'trajectory', 'storage', 'catalog'] },
  {
    layer: 'retention',
    may: ['sdk', 'util', 'errors', 'model', 'trajectory', 'storage', 'catalog'],
    typesFrom: ['observability'],
  },
  { layer: 'estimate', may: ['sdk', 'util', 'errors', 'model', 'trajectory', 'catalog'] },
  { layer: 'auth', may: ['sdk', 'util', 'errors', 'model', 'catalog'] },
  {
    layer: 'runs',
    may: ['sdk', 'util', 'errors', 'model', 'trajectory', 'storage', 'catalog', 'ingest', 'retention', 'estimate'],
    typesFrom: ['observability'],
  },
  {
    layer: 'http',
    may: ['sdk', 'util', 'errors', 'model', 'config', 'auth', 'runs'],
    typesFrom: ['logger', 'observability', 'trajectory', 'storage', 'ingest', 'retention', 'estimate'],
  },
  {
    layer: 'server',
    may: [
      'sdk',
      'util',
      'errors',
      'model',
      'config',
      'logger',
      'storage',
      'catalog',
      'ingest',
      'retention',
      'estimate',
    ],
    typesFrom: [],
  },
  { layer: 'main', may: ['config', 'logger', 'server'] },
  { layer: 'cli', may: ['sdk', 'config', 'logger', 'server', 'main'] },
];
// server.ts wires runs and http together too; kept out of the list above for line length.
const SERVER_ALSO = ['auth', 'observability', 'runs', 'http'];

export interface ImportEdge {
  from: string;
  to: string;
  file: string;
  specifier: string;
  typeOnly: boolean;
}

/** Every import of a gateway or SDK source file that lands in another layer. */
export async function importEdges(root: string): Promise<ImportEdge[]> {
  const files = [
    ...(await sourceFiles(path.join(root, 'src'))),
    ...(await sourceFiles(path.join(root, 'packages/sdk/src'))),
  ];
  const edges: ImportEdge[] = [];
  for (const file of files) {
    const from = layerOf(root, file);
    const text = await readFile(file, 'utf8');
    const pattern = /^\s*(import|export)(\s+type)?\b[^;]*?\bfrom\s+'([^']+)'|\bimport\(\s*'([^']+)'\s*\)/gms;
    for (const m of text.matchAll(pattern)) {
      const specifier = m[3] ?? m[4];
      const to = targetLayer(root, file, specifier);
      if (to === null || to === from) continue;
      edges.push({ from, to, file: path.relative(root, file), specifier, typeOnly: m[2] !== undefined });
    }
  }
  return edges;
}

/** Edges the rules do not allow, with the reason. */
export function violations(edges: readonly ImportEdge[]): (ImportEdge & { why: string })[] {
  const rules = new Map(LAYERS.map((l) => [l.layer, l]));
  return edges.flatMap((e) => {
    const rule = rules.get(e.from);
    if (!rule) return [{ ...e, why: `'${e.from}' is not a known layer: add it to LAYERS` }];
    const allowed =
      rule.may.includes(e.to) ||
      (e.from === 'server' && SERVER_ALSO.includes(e.to)) ||
      (e.typeOnly && (rule.typesFrom ?? []).includes(e.to));
    return allowed ? [] : [{ ...e, why: `${e.from} may not import ${e.typeOnly ? 'types from ' : ''}${e.to}` }];
  });
}

/** Layer → the layers it imports, bottom to top. */
export function layerGraph(edges: readonly ImportEdge[]): Map<string, Set<string>> {
  const graph = new Map(LAYERS.map((l) => [l.layer, new Set<string>()]));
  for (const e of edges) {
    if (!graph.has(e.from)) graph.set(e.from, new Set());
    graph.get(e.from)!.add(e.to);
  }
  return graph;
}

/** A cycle among layers, as a path, or null. */
export function findCycle(graph: ReadonlyMap<string, ReadonlySet<string>>): string[] | null {
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const visit = (node: string): string[] | null => {
    if (state.get(node) === 'done') return null;
    if (state.get(node) === 'open') return [...stack.slice(stack.indexOf(node)), node];
    state.set(node, 'open');
    stack.push(node);
    for (const next of graph.get(node) ?? []) {
      const cycle = visit(next);
      if (cycle) return cycle;
    }
    stack.pop();
    state.set(node, 'done');
    return null;
  };
  for (const node of graph.keys()) {
    const cycle = visit(node);
    if (cycle) return cycle;
  }
  return null;
}

function layerOf(root: string, file: string): string {
  const rel = path.relative(root, file).split(path.sep);
  if (rel[0] === 'packages') return 'sdk';
  return rel.length === 2 ? rel[1].replace(/\.ts$/, '') : rel[1];
}

function targetLayer(root: string, file: string, specifier: string): string | null {
  if (specifier === '@trajgate/sdk' || specifier.startsWith('@trajgate/sdk/')) return 'sdk';
  if (!specifier.startsWith('.')) return null; // node: builtins and npm packages
  const target = path.resolve(path.dirname(file), specifier);
  const rel = path.relative(root, target);
  if (!rel.startsWith(`src${path.sep}`) && !rel.startsWith(`packages${path.sep}`)) return `outside:${rel}`;
  return layerOf(root, target.replace(/\.js$/, '.ts'));
}

async function sourceFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true });
  const nested = await Promise.all(
    entries.map((e) => {
      const full = path.join(dir, e.name);
      if (e.isDirectory()) return sourceFiles(full);
      return Promise.resolve(e.name.endsWith('.ts') && !e.name.endsWith('.d.ts') ? [full] : []);
    }),
  );
  return nested.flat();
}
