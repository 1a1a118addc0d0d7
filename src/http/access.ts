import type { RequestHandler, Response } from 'express';
import { ANONYMOUS, authorize, type Principal } from '../auth/principal.js';
import type { TokenService } from '../auth/tokens.js';
import { AppError } from '../errors.js';
import { parseRunId } from './ids.js';
import type { Role } from '../model/access.js';
import type { Caller } from '../runs/types.js';

declare global {
  namespace Express {
    interface Locals {
      /** Set by `authenticate` for every /v1 request. */
      principal: Principal;
    }
  }
}

const BEARER = /^Bearer\s+(\S+)\s*$/i;

/**
 * Establishes `res.locals.principal`: from `Authorization: Bearer <token>` (mode `tokens`), or everyone as
 * `anonymous` (mode `none`). A missing, unknown, revoked or expired token is 401 with `WWW-Authenticate`.
 */
export function authenticate(mode: 'tokens' | 'none', tokens: TokenService): RequestHandler {
  return async (req, res, next) => {
    if (mode === 'none') {
      res.locals.principal = ANONYMOUS;
      next();
      return;
    }
    const header = req.get('authorization');
    const secret = header === undefined ? undefined : BEARER.exec(header)?.[1];
    const principal = secret === undefined ? null : await tokens.authenticate(secret);
    if (!principal) {
      res.setHeader('WWW-Authenticate', 'Bearer realm="trajgate"');
      next(
        new AppError(
          'unauthenticated',
          header === undefined
            ? 'send a token: Authorization: Bearer <token>'
            : 'the token is unknown, revoked or expired (or the Authorization header is not "Bearer <token>")',
        ),
      );
      return;
    }
    res.locals.principal = principal;
    next();
  };
}

/** Throws `forbidden` unless the caller's role includes `needed` and its scope covers `target`. */
export function allow(res: Response, needed: Role, target?: { run?: string; global?: boolean }): Principal {
  authorize(res.locals.principal, needed, target);
  return res.locals.principal;
}

/** The caller as the RunService sees it: the audit actor and the run scope. */
export function callerOf(res: Response): Caller {
  return { actor: res.locals.principal.id, scope: res.locals.principal.runs };
}

/**
 * Route middleware: the role an operation needs, checked against the run in the path (`:run`) before the
 * body is read. `global`: the operation affects every run that uses what it changes (named policies).
 */
export function need(role: Role, options: { global?: boolean } = {}): RequestHandler<Record<string, string>> {
  return (req, res, next) => {
    const raw = req.params.run;
    const run = typeof raw === 'string' ? parseRunId(raw) : undefined;
    authorize(res.locals.principal, role, { run, global: options.global });
    next();
  };
}
