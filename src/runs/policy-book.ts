import type { PolicyRecord as PolicyRecordView } from '@trajgate/sdk/contract';
import type { Catalog, PolicyRecord } from '../catalog/catalog.js';
import { AppError, errors } from '../errors.js';
import type { RunPolicyRef, RunRecord } from '../model/records.js';
import { DEFAULT_POLICY, PolicyInput, resolvePolicy, type Policy } from '../model/policy.js';

/** The name under which the built-in policy is listed; it cannot be replaced. */
export const DEFAULT_POLICY_NAME = 'default';

/** A named policy as the API shows it: as stored, and with every default filled in. */
export type PolicyView = PolicyRecordView;

/**
 * Named retention policies (`default` is built in) and the resolution of a run's policy reference. Stored
 * policies are validated on the way in, so a stored one always parses.
 */
export class PolicyBook {
  constructor(private readonly catalog: Catalog) {}

  async list(): Promise<PolicyView[]> {
    return [builtIn(), ...(await this.catalog.listPolicies()).map(describe)];
  }

  async get(name: string): Promise<PolicyView> {
    if (name === DEFAULT_POLICY_NAME) return builtIn();
    const record = await this.catalog.getPolicy(name);
    if (!record) throw policyNotFound(name);
    return describe(record);
  }

  async put(name: string, input: PolicyInput, actor: string): Promise<{ created: boolean; policy: PolicyView }> {
    if (name === DEFAULT_POLICY_NAME) {
      throw errors.invalidRequest(
        `'${DEFAULT_POLICY_NAME}' is the built-in policy and cannot be replaced; store yours under another name`,
      );
    }
    const before = await this.catalog.getPolicy(name);
    const { created, record } = await this.catalog.putPolicy(name, input);
    await this.catalog.appendAudit([
      { actor, action: 'policy.put', details: { name, before: before?.policy ?? null, after: record.policy } },
    ]);
    return { created, policy: describe(record) };
  }

  /** The policy a reference names (throws policy_not_found for an unknown name). */
  async resolve(ref: RunPolicyRef): Promise<Policy> {
    if ('policy' in ref) return resolvePolicy(ref.policy);
    return (await this.get(ref.name)).resolved;
  }

  /** The policy in force for a run: its named or inline policy, else the built-in default. */
  async forRun(run: RunRecord): Promise<Policy> {
    if (!run.policy) return DEFAULT_POLICY;
    try {
      return await this.resolve(run.policy);
    } catch (err) {
      if (err instanceof AppError && err.code === 'policy_not_found') {
        throw new AppError(
          'policy_not_found',
          `run '${run.id}' uses policy '${err.details?.policy}', which does not exist`,
          {
            policy: err.details?.policy,
          },
        );
      }
      throw err;
    }
  }
}

function policyNotFound(name: string): AppError {
  return new AppError('policy_not_found', `policy '${name}' does not exist`, { policy: name });
}

function builtIn(): PolicyView {
  return {
    name: DEFAULT_POLICY_NAME,
    builtIn: true,
    policy: DEFAULT_POLICY,
    resolved: DEFAULT_POLICY,
    createdAt: null,
    updatedAt: null,
  };
}

function describe(record: PolicyRecord): PolicyView {
  const stored = PolicyInput.parse(record.policy);
  return {
    name: record.name,
    builtIn: false,
    policy: stored,
    resolved: resolvePolicy(stored),
    createdAt: record.createdAt,
    updatedAt: record.updatedAt,
  };
}
