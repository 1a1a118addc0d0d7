import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Catalog } from '../catalog/catalog.js';
import { AppError } from '../errors.js';
import type { TokenInput, TokenRecord } from '../model/access.js';
import { ENV_ADMIN, type Principal } from './principal.js';

/** Secrets are `tg_` + 32 random bytes in base64url: 256 bits, so a plain SHA-256 is a safe stored form. */
const SECRET_BYTES = 32;
const PREFIX = 'tg_';

export interface CreatedToken extends TokenRecord {
  token: string;
}

/**
 * Bearer tokens: created with a random secret shown once, stored only as its SHA-256, checked against the
 * catalog on every request (so a revocation takes effect at the next request, on every replica).
 */
export class TokenService {
  private readonly adminHash: Buffer | null;

  constructor(
    private readonly catalog: Catalog,
    adminToken?: string,
  ) {
    this.adminHash = adminToken ? hash(adminToken) : null;
  }

  /** The principal a presented secret stands for, or null (unknown, revoked or expired). */
  async authenticate(secret: string, now = new Date()): Promise<Principal | null> {
    const presented = hash(secret);
    if (this.adminHash && timingSafeEqual(presented, this.adminHash)) return ENV_ADMIN;
    const token = await this.catalog.tokenBySecretHash(presented.toString('hex'));
    if (!token || !timingSafeEqual(Buffer.from(token.secretHash, 'hex'), presented)) return null;
    if (token.revokedAt !== null) return null;
    if (token.expiresAt !== null && Date.parse(token.expiresAt) <= now.getTime()) return null;
    return { id: token.id, name: token.name, role: token.role, runs: token.runs };
  }

  async create(input: TokenInput, by: Principal): Promise<CreatedToken> {
    if (input.expiresAt && Date.parse(input.expiresAt) <= Date.now()) {
      throw new AppError('invalid_request', `expiresAt ${input.expiresAt} is in the past`);
    }
    const secret = PREFIX + randomBytes(SECRET_BYTES).toString('base64url');
    const record = await this.catalog.insertToken({
      id: `tok_${randomBytes(8).toString('hex')}`,
      name: input.name,
      role: input.role,
      runs: input.runs,
      secretHash: hash(secret).toString('hex'),
      expiresAt: input.expiresAt ? new Date(input.expiresAt).toISOString() : null,
      createdAt: new Date().toISOString(),
      createdBy: by.id,
    });
    return { ...record, token: secret };
  }

  list(): Promise<TokenRecord[]> {
    return this.catalog.listTokens();
  }

  async revoke(id: string, by: Principal): Promise<TokenRecord> {
    const revoked = await this.catalog.revokeToken(id, by.id);
    if (!revoked) throw new AppError('token_not_found', `token '${id}' does not exist`, { token: id });
    return revoked;
  }

  /** Whether anyone can authenticate at all: the bootstrap token is set, or a usable token exists. */
  async anyUsable(now = new Date()): Promise<boolean> {
    if (this.adminHash) return true;
    return (await this.catalog.listTokens()).some(
      (t) => t.revokedAt === null && (t.expiresAt === null || Date.parse(t.expiresAt) > now.getTime()),
    );
  }
}

function hash(secret: string): Buffer {
  return createHash('sha256').update(secret, 'utf8').digest();
}
