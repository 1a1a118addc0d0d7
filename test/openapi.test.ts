import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ERROR_CODES } from '../src/errors.js';
import { checkSpecFile, spec } from './helpers/openapi.js';

describe('openapi/trajgate.yaml', () => {
  it('is a valid OpenAPI 3.1 document whose schemas compile', () => {
    assert.deepEqual(checkSpecFile(), []);
  });

  it('lists exactly the error codes of the catalogue', () => {
    const schemas = (spec.components as { schemas: Record<string, { enum?: string[] }> }).schemas;
    assert.deepEqual([...(schemas.ErrorCode.enum ?? [])].sort(), [...ERROR_CODES].sort());
  });
});
