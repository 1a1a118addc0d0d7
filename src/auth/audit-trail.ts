import type { AuditQuery, Catalog } from '../catalog/catalog.js';
import type { AuditRecord } from '../model/access.js';
import type { Principal } from './principal.js';

/** Reading the audit trail: admins see every entry, operators the entries about runs in their scope. */
export class AuditTrail {
  constructor(private readonly catalog: Catalog) {}

  list(query: Omit<AuditQuery, 'scope'>, reader: Principal): Promise<AuditRecord[]> {
    return this.catalog.listAudit(reader.role === 'admin' ? query : { ...query, scope: reader.runs });
  }
}
