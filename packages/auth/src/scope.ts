import { isRepositoryName, type Action } from '@berthjs/core';

/** One grant of a token's `access` claim, as the Docker token spec writes it. */
export interface TokenAccess {
  type: string;
  name: string;
  actions: string[];
}

const ACTIONS: readonly Action[] = ['pull', 'push', 'delete'];

/** A repository scope a client asked for, with the actions Berth knows. */
export interface RequestedScope {
  name: string;
  actions: Action[];
}

/**
 * Parse `scope` query values (`repository:acme/app:pull,push`; several per value when separated by
 * spaces). Only `repository` scopes (optionally with a `(class)` suffix) are kept, with the
 * actions Berth knows; `*` means all of them. Anything else is ignored: it grants nothing.
 */
export function parseScopes(values: string[]): RequestedScope[] {
  const scopes: RequestedScope[] = [];
  for (const item of values.flatMap((v) => v.split(' '))) {
    const first = item.indexOf(':');
    const last = item.lastIndexOf(':');
    if (first <= 0 || last === first) continue;
    const type = item.slice(0, first).replace(/\(.*\)$/, '');
    const name = item.slice(first + 1, last);
    if (type !== 'repository' || !isRepositoryName(name)) continue;
    const requested = item.slice(last + 1).split(',');
    const actions = requested.includes('*') ? [...ACTIONS] : ACTIONS.filter((a) => requested.includes(a));
    if (actions.length > 0) scopes.push({ name, actions });
  }
  return scopes;
}

/** Whether `access` grants `action` on `repository`. */
export function grants(access: TokenAccess[], action: Action, repository: string): boolean {
  return access.some((a) => a.type === 'repository' && a.name === repository && a.actions.includes(action));
}
