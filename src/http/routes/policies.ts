import { Router } from 'express';
import { AppError } from '../../errors.js';
import { type RunPolicyRef, RunPolicyRefShape } from '../../model/records.js';
import { PolicyInput } from '../../model/policy.js';
import { callerOf, need } from '../access.js';
import type { AppContext } from '../context.js';
import { jsonBody } from '../json-body.js';
import { RUN_ID_PATTERN, parseRunId } from '../ids.js';
import { parseInput } from '../validate.js';

export function policyRoutes(ctx: AppContext): Router {
  const router = Router();
  const json = jsonBody(ctx.config.limits.maxJsonBytes);

  router.get('/v1/policies', need('reader'), async (_req, res) => {
    res.json({ items: await ctx.policies.list() });
  });

  router.get('/v1/policies/:name', need('reader'), async (req, res) => {
    res.json(await ctx.policies.get(parsePolicyName(req.params.name)));
  });

  router.put('/v1/policies/:name', need('operator', { global: true }), json, async (req, res) => {
    const name = parsePolicyName(req.params.name);
    const input = parseInput(PolicyInput, req.body ?? {}, 'policy');
    const { created, policy } = await ctx.policies.put(name, input, res.locals.principal.id);
    res.status(created ? 201 : 200).json(policy);
  });

  router.put('/v1/runs/:run/policy', need('operator'), json, async (req, res) => {
    const run = parseRunId(req.params.run);
    const ref = parsePolicyRef(req.body ?? {}, 'run policy (send {"name": ...} or {"policy": {...}})');
    res.json(await ctx.runs.setPolicy(run, ref, callerOf(res)));
  });

  router.post('/v1/runs/:run/retention/simulate', need('operator'), json, async (req, res) => {
    const run = parseRunId(req.params.run);
    const empty = !req.body || Object.keys(req.body).length === 0;
    const ref = empty ? undefined : parsePolicyRef(req.body, 'simulation request');
    res.json(await ctx.runs.simulate(run, ref));
  });

  return router;
}

/** A policy reference whose inline policy, if any, is valid. */
function parsePolicyRef(body: unknown, what: string): RunPolicyRef {
  const ref = parseInput(RunPolicyRefShape, body, what);
  return 'policy' in ref ? { policy: parseInput(PolicyInput, ref.policy, 'policy') } : ref;
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
