import { Router } from 'express';
import { z } from 'zod';
import { TokenInput } from '../../model/access.js';
import { need } from '../access.js';
import type { AppContext } from '../context.js';
import { jsonBody } from '../json-body.js';
import { parseInput } from '../validate.js';

const TOKEN_ID = /^tok_[0-9a-f]{16}$/;

export function tokenRoutes(ctx: AppContext): Router {
  const router = Router();
  const json = jsonBody(ctx.config.limits.maxJsonBytes);

  router.post('/v1/tokens', need('admin'), json, async (req, res) => {
    const by = res.locals.principal;
    const input = parseInput(TokenInput, req.body ?? {}, 'token');
    res.status(201).json(await ctx.tokens.create(input, by));
  });

  router.get('/v1/tokens', need('admin'), async (req, res) => {
    parseInput(z.strictObject({}), req.query, 'query');
    res.json({ items: await ctx.tokens.list() });
  });

  router.delete('/v1/tokens/:id', need('admin'), async (req, res) => {
    const by = res.locals.principal;
    const id = parseInput(
      z.string().regex(TOKEN_ID, 'must be a token id (tok_ and 16 hex digits)'),
      req.params.id,
      'token id',
    );
    res.json(await ctx.tokens.revoke(id, by));
  });

  return router;
}
