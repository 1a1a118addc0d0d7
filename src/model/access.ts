import type { AuditEntry } from '@trajgate/sdk/contract';
import { z } from 'zod';

/** Roles in order: each includes the ones before it (docs/architecture.md §8). */
export const ROLES = ['reader', 'writer', 'operator', 'admin'] as const;
export const Role = z.enum(ROLES);
export type Role = z.infer<typeof Role>;

/** An exact run id, or a prefix of run ids ending in `*` (`*` alone: every run). */
export const RunScopePattern = z
  .string()
  .regex(
    /^(\*|[A-Za-z0-9][A-Za-z0-9._-]{0,127}\*?)$/,
    'must be a run id, a run id prefix ending in *, or * for every run',
  );

export const TokenInput = z
  .object({
    name: z
      .string()
      .trim()
      .min(1)
      .max(128)
      // Control characters have no place in a name shown in audit trails, and Postgres text cannot hold NUL.
      .regex(/^[^\p{Cc}]*$/u, 'must not contain control characters'),
    role: Role,
    runs: z.array(RunScopePattern).min(1).max(100),
    expiresAt: z.iso.datetime({ offset: true }).nullable().optional(),
  })
  .strict();
export type TokenInput = z.infer<typeof TokenInput>;

export const TokenRecord = z.object({
  id: z.string(),
  name: z.string(),
  role: Role,
  runs: z.array(z.string()),
  expiresAt: z.string().nullable(),
  createdAt: z.string(),
  createdBy: z.string(),
  revokedAt: z.string().nullable(),
});
export type TokenRecord = z.infer<typeof TokenRecord>;

export const AUDIT_ACTIONS = [
  'token.create',
  'token.revoke',
  'policy.put',
  'run.policy',
  'checkpoint.pin',
  'checkpoint.unpin',
  'checkpoint.restore',
  'checkpoint.discard',
  'checkpoint.delete',
] as const;
export type AuditAction = (typeof AUDIT_ACTIONS)[number];

/** An audit entry to write; the catalog adds its id and time. */
export interface NewAuditEntry {
  actor: string;
  action: AuditAction;
  run?: string | null;
  step?: number | null;
  details?: Record<string, unknown>;
}

/** An audit entry as stored and served: the wire contract's AuditEntry. */
export type AuditRecord = AuditEntry;

/** Whether `scope` (patterns as in RunScopePattern) covers the run `id`. */
export function scopeCovers(scope: readonly string[], id: string): boolean {
  return scope.some((p) => (p.endsWith('*') ? id.startsWith(p.slice(0, -1)) : p === id));
}

/** Whether `role` includes `needed`. */
export function roleIncludes(role: Role, needed: Role): boolean {
  return ROLES.indexOf(role) >= ROLES.indexOf(needed);
}
