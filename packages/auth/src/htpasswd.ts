import { createHmac, randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import bcrypt from 'bcryptjs';

/** bcrypt's variants, all the same algorithm: `$2y$` (Apache `htpasswd -B`), `$2a$`, `$2b$`. */
const BCRYPT = /^\$2[aby]\$\d{2}\$[./A-Za-z0-9]{53}$/;

export interface HtpasswdOptions {
  /**
   * How long a successful check is remembered (ms), so a push of many requests pays bcrypt once
   * (bcryptjs is pure JS: ~70 ms per check at cost 10). Only an HMAC of the credentials under a
   * per-process key is kept. Default 60 000; 0 disables.
   */
  cacheTtlMs?: number;
}

/**
 * Users and bcrypt hashes from an htpasswd file (`user:$2y$...` lines; `#` comments and blank lines
 * ignored). Other hash formats (MD5 `$apr1$`, SHA1, crypt) are refused at load: they are weak,
 * and refusing beats silently locking users out.
 */
export class Htpasswd {
  private readonly users = new Map<string, string>();
  private readonly verified = new Map<string, number>();
  private readonly cacheKey = randomBytes(32);
  private readonly cacheTtlMs: number;
  // Unknown users are checked against this, so timing does not tell which users exist.
  private readonly decoy = bcrypt.hashSync(randomBytes(16).toString('hex'), 10);

  constructor(text: string, options: HtpasswdOptions = {}) {
    this.cacheTtlMs = options.cacheTtlMs ?? 60_000;
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
  }

  /** Whether `password` is `username`'s. */
  async verify(username: string, password: string): Promise<boolean> {
    const key = createHmac('sha256', this.cacheKey).update(`${username}\0${password}`).digest('base64');
    const until = this.verified.get(key);
    if (until !== undefined && until > Date.now()) return true;
    const hash = this.users.get(username);
    const ok = await bcrypt.compare(password, hash ?? this.decoy);
    if (!ok || hash === undefined) return false;
    if (this.cacheTtlMs > 0) {
      if (this.verified.size > 10_000) this.verified.clear();
      this.verified.set(key, Date.now() + this.cacheTtlMs);
    }
    return true;
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
