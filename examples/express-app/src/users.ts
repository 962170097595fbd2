import { scryptSync, timingSafeEqual } from 'node:crypto';

/** The dashboard's own accounts: each may deploy (push) or only watch (pull) in some organizations. */
export interface Account {
  login: string;
  orgs: Record<string, 'deployer' | 'watcher'>;
}

const hash = (password: string) => scryptSync(password, 'dashboard-demo-salt', 32);

/** Demo accounts; a real dashboard keeps these in its database. */
const ACCOUNTS: (Account & { hash: Buffer })[] = [
  { login: 'dana', orgs: { initech: 'deployer' }, hash: hash('dana-password') },
  { login: 'erin', orgs: { initech: 'watcher', hooli: 'deployer' }, hash: hash('erin-password') },
];

export function verifyAccount(login: string, password: string): Account | undefined {
  const account = ACCOUNTS.find((a) => a.login === login);
  if (!account || !timingSafeEqual(account.hash, hash(password))) return undefined;
  return { login: account.login, orgs: account.orgs };
}

export function findAccount(login: string): Account | undefined {
  const account = ACCOUNTS.find((a) => a.login === login);
  return account && { login: account.login, orgs: account.orgs };
}
