import { createHmac, randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import bcrypt from 'bcryptjs';
import { LRUCache } from 'lru-cache';
import { PasswordChecks } from './password-checks.js';

/** bcrypt's variants, all the same algorithm: `$2y$` (Apache `htpasswd -B`), `$2a$`, `$2b$`. */
const BCRYPT = /^\$2[aby]\$\d{2}\$[./A-Za-z0-9]{53}$/;

export interface HtpasswdOptions {
  /**
   * How long a successful check is remembered (ms), so a push of many requests pays bcrypt once
   * (bcryptjs is pure JS: ~70 ms per check at cost 10). Only an HMAC of the credentials under a
   * per-process key is kept, for at most 10,000 credentials (least recently used leave first).
   * Default 60 000; 0 disables.
   */
  cacheTtlMs?: number;
  /**
   * Password checks queued at once (bcrypt runs one at a time); more are refused with 429
   * TOOMANYREQUESTS and `Retry-After`, so a flood of logins cannot queue without bound. Default 100.
   */
  maxPendingChecks?: number;
}

/**
 * Users and bcrypt hashes from an htpasswd file (`user:$2y$...` lines; `#` comments and blank lines
 * ignored). Other hash formats (MD5 `$apr1$`, SHA1, crypt) are refused at load: they are weak,
 * and refusing beats silently locking users out.
 *
 * A user who is not in the file is refused as slowly as a wrong password for one who is, at the
 * bcrypt cost of a user of the file picked by the name, but without the CPU work (see
 * `PasswordChecks`): timing does not tell which users exist, and guessing names costs the server
 * next to nothing.
 */
export class Htpasswd {
  private readonly users = new Map<string, string>();
  private readonly key = randomBytes(32);
  private readonly verified: LRUCache<string, true> | undefined;
  /** Checks under way, by credentials: concurrent logins with the same credentials share one bcrypt. */
  private readonly inFlight = new Map<string, Promise<boolean>>();
  private readonly checks: PasswordChecks;
  /** The file's hashes: an unknown user is refused as slowly as one of them. */
  private readonly hashes: string[];

  constructor(text: string, options: HtpasswdOptions = {}) {
    const ttl = options.cacheTtlMs ?? 60_000;
    this.verified = ttl > 0 ? new LRUCache({ max: 10_000, ttl }) : undefined;
    this.checks = new PasswordChecks(options.maxPendingChecks ?? 100);
    for (const [index, raw] of text.split(/\r?\n/).entries()) {
      const line = raw.trim();
      if (line === '' || line.startsWith('#')) continue;
      const colon = line.indexOf(':');
      const user = line.slice(0, colon);
      const hash = line.slice(colon + 1);
      if (colon <= 0 || !BCRYPT.test(hash)) {
        throw new Error(`htpasswd line ${index + 1}: expected user:<bcrypt hash> ($2y$, $2a$ or $2b$; create it with htpasswd -B)`);
      }
      this.users.set(user, hash);
    }
    this.hashes = [...this.users.values()];
  }

  /**
   * Whether `password` is `username`'s. Rejects with a 429 `OciError` while `maxPendingChecks`
   * checks are queued.
   */
  async verify(username: string, password: string): Promise<boolean> {
    const key = this.mac(JSON.stringify([username, password])).toString('base64');
    if (this.verified?.get(key)) return true;
    let check = this.inFlight.get(key);
    if (!check) {
      check = this.check(username, password).finally(() => this.inFlight.delete(key));
      this.inFlight.set(key, check);
    }
    const ok = await check;
    if (ok) this.verified?.set(key, true);
    return ok;
  }

  private check(username: string, password: string): Promise<boolean> {
    const hash = this.users.get(username);
    if (hash !== undefined) return this.checks.check(password, hash);
    // Nobody to protect in an empty file.
    if (this.hashes.length === 0) return Promise.resolve(false);
    // The same stand-in for every attempt on a name, so repeated timings of one name agree.
    return this.checks.refuse(this.hashes[this.mac(`decoy\0${username}`).readUInt32BE(0) % this.hashes.length]);
  }

  private mac(text: string): Buffer {
    return createHmac('sha256', this.key).update(text).digest();
  }

  /** The user names in the file. */
  get usernames(): string[] {
    return [...this.users.keys()];
  }
}

/** Read an htpasswd file; see `Htpasswd`. Pass `htpasswd.verify.bind(htpasswd)` (or a closure) to `basicAuth`. */
export async function loadHtpasswd(path: string, options?: HtpasswdOptions): Promise<Htpasswd> {
  return new Htpasswd(await readFile(path, 'utf8'), options);
}

/** One htpasswd line for `username` with a `$2y$` bcrypt hash, as `htpasswd -nbB` prints it. */
export async function htpasswdLine(username: string, password: string, cost = 10): Promise<string> {
  if (username === '' || username.includes(':')) throw new Error('htpasswd user names cannot be empty or contain ":"');
  const hash = await bcrypt.hash(password, cost);
  return `${username}:${hash.replace(/^\$2[ab]\$/, '$2y$')}`;
}
