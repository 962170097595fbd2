import { scryptSync, timingSafeEqual } from 'node:crypto';

/** The app's own users: each belongs to one team, which is also their registry tenant. */
export interface User {
  username: string;
  team: string;
  role: 'viewer' | 'developer' | 'admin';
}

interface StoredUser extends User {
  salt: string;
  hash: Buffer;
}

const hash = (password: string, salt: string) => scryptSync(password, salt, 32);

function user(username: string, team: string, role: User['role'], password: string): StoredUser {
  const salt = `${username}-salt`;
  return { username, team, role, salt, hash: hash(password, salt) };
}

/** Demo accounts (a real app keeps these in its database). */
const USERS = [
  user('alice', 'acme', 'admin', 'alice-password'),
  user('bob', 'acme', 'viewer', 'bob-password'),
  user('carol', 'globex', 'developer', 'carol-password'),
];

/** The user whose password this is, or undefined. */
export function checkPassword(username: string, password: string): User | undefined {
  const found = USERS.find((u) => u.username === username);
  if (!found || !timingSafeEqual(found.hash, hash(password, found.salt))) return undefined;
  return { username: found.username, team: found.team, role: found.role };
}

export function findUser(username: string): User | undefined {
  const found = USERS.find((u) => u.username === username);
  return found && { username: found.username, team: found.team, role: found.role };
}
