import express, { Router } from 'express';
import type { PolicyRecord } from '../../catalog/catalog.js';
import { RunPolicyRef } from '../../model/records.js';
import { AppError, errors } from '../../errors.js';
import { DEFAULT_POLICY, PolicyInput, resolvePolicy, type Policy } from '../../retention/policy.js';
import type { AppContext } from '../context.js';
import { RUN_ID_PATTERN, parseRunId } from '../ids.js';
import { parseInput } from '../validate.js';

/** The name under which the built-in policy is listed; it cannot be replaced. */
export const DEFAULT_POLICY_NAME = 'default';

export function policyRoutes(ctx: AppContext): Router {
  const router = Router();
  const json = express.json({ limit: ctx.config.limits.maxJsonBytes, strict: true });

  router.get('/v1/policies', async (_req, res) => {
    const stored = await ctx.catalog.listPolicies();
    res.json({ items: [builtIn(), ...stored.map(describe)] });
  });

  router.get('/v1/policies/:name', async (req, res) => {
    const name = parsePolicyName(req.params.name);
    if (name === DEFAULT_POLICY_NAME) {
      res.json(builtIn());
      return;
    }
    const record = await ctx.catalog.getPolicy(name);
    if (!record) throw policyNotFound(name);
    res.json(describe(record));
  });

  router.put('/v1/policies/:name', json, async (req, res) => {
    const name = parsePolicyName(req.params.name);
    if (name === DEFAULT_POLICY_NAME) {
      throw errors.invalidRequest(
        `'${DEFAULT_POLICY_NAME}' is the built-in policy and cannot be replaced; store yours under another name`,
      );
    }
    const input = parseInput(PolicyInput, req.body ?? {}, 'policy');
    const { created, record } = await ctx.catalog.putPolicy(name, input);
    res.status(created ? 201 : 200).json(describe(record));
  });

  router.put('/v1/runs/:run/policy', json, async (req, res) => {
    const runId = parseRunId(req.params.run);
    const ref = parseInput(RunPolicyRef, req.body ?? {}, 'run policy (send {"name": ...} or {"policy": {...}})');
    if ('name' in ref && ref.name !== DEFAULT_POLICY_NAME && !(await ctx.catalog.getPolicy(ref.name)))
      throw policyNotFound(ref.name);
    if ('policy' in ref) parseInput(PolicyInput, ref.policy, 'policy');
    await ctx.catalog.ensureRun(runId);
    await ctx.catalog.setRunPolicy(runId, 'name' in ref && ref.name === DEFAULT_POLICY_NAME ? null : ref);
    const decision = await ctx.runs.applyRetention(runId);
    res.json({ run: await ctx.catalog.getRun(runId), decision });
  });

  router.post('/v1/runs/:run/retention/simulate', json, async (req, res) => {
    const runId = parseRunId(req.params.run);
    const body = parseInput(
      RunPolicyRef.optional(),
      req.body && Object.keys(req.body).length ? req.body : undefined,
      'simulation request',
    );
    let policy: Policy | undefined;
    if (body && 'policy' in body) policy = resolvePolicy(parseInput(PolicyInput, body.policy, 'policy'));
    else if (body && body.name !== DEFAULT_POLICY_NAME) {
      const record = await ctx.catalog.getPolicy(body.name);
      if (!record) throw policyNotFound(body.name);
      policy = resolvePolicy(PolicyInput.parse(record.policy));
    } else if (body) policy = DEFAULT_POLICY;
    const { decision } = await ctx.retention.decide(runId, policy);
    res.json(decision);
  });

  return router;
}

function parsePolicyName(value: string): string {
  if (!RUN_ID_PATTERN.test(value)) {
    throw new AppError(
      'invalid_request',
      `policy name '${value.slice(0, 140)}' is invalid: use 1-128 characters from [A-Za-z0-9._-]`,
    );
  }
  return value;
}

function policyNotFound(name: string): AppError {
  return new AppError('policy_not_found', `policy '${name}' does not exist`, { policy: name });
}

function builtIn() {
  return {
    name: DEFAULT_POLICY_NAME,
    builtIn: true,
    policy: DEFAULT_POLICY,
    resolved: DEFAULT_POLICY,
    createdAt: null,
    updatedAt: null,
  };
}

function describe(record: PolicyRecord) {
  return {
    name: record.name,
    builtIn: false,
    policy: record.policy,
    resolved: resolvePolicy(PolicyInput.parse(record.policy)),
    createdAt: record.createdAt,
    updatedAt: record.updatedAt,
  };
}
