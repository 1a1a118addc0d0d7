import { type Role, roleIncludes, scopeCovers } from '../model/access.js';
import { AppError } from '../errors.js';

/** Who is calling: a token, the bootstrap admin token, or everyone when access control is off. */
export interface Principal {
  /** Token id, `admin-env` or `anonymous`: the actor in the audit trail. */
  id: string;
  name: string;
  role: Role;
  /** Run scope patterns (docs/architecture.md §8). */
  runs: readonly string[];
}

/** The caller when TRAJGATE_AUTH=none: may do everything, audited as `anonymous`. */
export const ANONYMOUS: Principal = Object.freeze({ id: 'anonymous', name: 'anonymous', role: 'admin', runs: ['*'] });

/** The bootstrap admin (TRAJGATE_ADMIN_TOKEN). */
export const ENV_ADMIN: Principal = Object.freeze({
  id: 'admin-env',
  name: 'TRAJGATE_ADMIN_TOKEN',
  role: 'admin',
  runs: ['*'],
});

/**
 * Throws `forbidden` unless the principal's role includes `needed` and, for a run, its scope covers the
 * run (admins reach every run). `global`: the action affects runs beyond one (a named policy), so it needs
 * a scope of `*`.
 */
export function authorize(principal: Principal, needed: Role, target: { run?: string; global?: boolean } = {}): void {
  if (!roleIncludes(principal.role, needed)) {
    throw new AppError(
      'forbidden',
      `this needs the ${needed} role; the token '${principal.name}' is ${principal.role}`,
      {
        needed,
        role: principal.role,
      },
    );
  }
  if (principal.role === 'admin') return;
  if (target.run !== undefined && !scopeCovers(principal.runs, target.run)) {
    throw new AppError('forbidden', `run '${target.run}' is outside the token's scope (${principal.runs.join(', ')})`, {
      needed,
      run: target.run,
      scope: principal.runs,
    });
  }
  if (target.global && !principal.runs.includes('*')) {
    throw new AppError('forbidden', `this affects every run that uses it: it needs the ${needed} role with scope *`, {
      needed,
      scope: principal.runs,
    });
  }
}
