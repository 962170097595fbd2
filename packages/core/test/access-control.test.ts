// AccessControl: who is calling, what they may do, and the tenant rule; then the same rules as a
// registry on the memory stores applies them to mounts.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { linkBlob, MemoryBlobStore, MemoryMetadataStore } from '@berthjs/testkit';
import { AccessControl } from '../src/access.js';
import { UnauthorizedError, type AuthHooks, type Scope } from '../src/auth.js';
import { OciError } from '../src/errors.js';
import type { BerthRequest } from '../src/http.js';
import { createRegistry } from '../src/registry.js';

const request: BerthRequest = { method: 'GET', url: '/v2/a/b/tags/list', headers: {}, body: Readable.from([]) };
const scopes: Scope[] = [{ repository: 'a/b', actions: ['pull'] }];

async function rejection(promise: Promise<unknown>): Promise<OciError> {
  const error = await promise.then(
    () => assert.fail('expected a rejection'),
    (e: unknown) => e,
  );
  assert.ok(error instanceof OciError, `expected an OciError, got ${error}`);
  return error;
}

describe('AccessControl', () => {
  it('without hooks: everyone is anonymous and may do everything', async () => {
    const access = new AccessControl({});
    assert.equal(await access.identify(request, scopes), undefined);
    await access.require(undefined, 'delete', 'a/b', scopes);
    assert.equal(await access.can(undefined, 'push', 'x'), true);
    assert.equal(access.sameTenant('a/b', 'c/d'), true);
  });

  it("with authenticate, anonymous callers get 401 and the challenge ('none' is the default)", async () => {
    const challenges: unknown[] = [];
    const access = new AccessControl({
      authenticate: () => undefined,
      challenge: (s, reason) => {
        challenges.push([s, reason]);
        return 'Bearer realm="x"';
      },
    });
    const error = await rejection(access.identify(request, scopes));
    assert.equal(error.status, 401);
    assert.equal(error.headers['WWW-Authenticate'], 'Bearer realm="x"');
    assert.deepEqual(error.detail, ['repository:a/b:pull']);
    assert.deepEqual(challenges, [[scopes, undefined]]);
  });

  it("with anonymous: 'authorize', anonymous callers reach authorize, and a refusal is 401", async () => {
    const asked: unknown[] = [];
    const access = new AccessControl({
      authenticate: () => undefined,
      anonymous: 'authorize',
      authorize: (r) => {
        asked.push(r);
        return r.repository === 'public/app';
      },
    });
    const principal = await access.identify(request, scopes);
    assert.equal(principal, undefined);
    await access.require(principal, 'pull', 'public/app', scopes);
    const error = await rejection(access.require(principal, 'pull', 'a/b', scopes));
    assert.equal(error.code, 'UNAUTHORIZED');
    assert.equal(error.headers['WWW-Authenticate'], 'Basic realm="berth"');
    assert.deepEqual(asked, [
      { principal: undefined, action: 'pull', repository: 'public/app' },
      { principal: undefined, action: 'pull', repository: 'a/b' },
    ]);
  });

  it('bad credentials are 401 with the challenge, carrying the reason and the message', async () => {
    const access = new AccessControl({
      authenticate: () => {
        throw new UnauthorizedError('token expired', 'invalid_token');
      },
      challenge: (_s, reason) => `Bearer error="${reason}"`,
    });
    const error = await rejection(access.identify(request, scopes));
    assert.equal(error.status, 401);
    assert.equal(error.message, 'token expired');
    assert.equal(error.headers['WWW-Authenticate'], 'Bearer error="invalid_token"');
  });

  it('a hook failing for another reason is not turned into a 401', async () => {
    const broken = new Error('user database down');
    const access = new AccessControl({
      authenticate: async () => {
        throw broken;
      },
    });
    await assert.rejects(access.identify(request, scopes), (e) => e === broken);
  });

  it('a known caller refused is 403 DENIED naming the scopes; only a literal true allows', async () => {
    const access = new AccessControl({
      authenticate: () => ({ user: 'u' }),
      authorize: ({ action }) => (action === 'pull' ? true : ('yes' as unknown as boolean)),
    });
    const principal = await access.identify(request, scopes);
    assert.deepEqual(principal, { user: 'u' });
    await access.require(principal, 'pull', 'a/b', scopes);
    const error = await rejection(access.require(principal, 'push', 'a/b', [{ repository: 'a/b', actions: ['pull', 'push'] }]));
    assert.equal(error.status, 403);
    assert.equal(error.code, 'DENIED');
    assert.deepEqual(error.detail, ['repository:a/b:pull,push']);
  });

  it('authorize throwing UnauthorizedError asks for a better token (401 insufficient_scope)', async () => {
    const access = new AccessControl({
      authenticate: () => ({ token: 't' }),
      authorize: () => {
        throw new UnauthorizedError('scope missing', 'insufficient_scope');
      },
      challenge: (s, reason) => `Bearer scope="${s.map((x) => x.repository).join(' ')}",error="${reason}"`,
    });
    const error = await rejection(access.require({ token: 't' }, 'pull', 'a/b', scopes));
    assert.equal(error.status, 401);
    assert.equal(error.headers['WWW-Authenticate'], 'Bearer scope="a/b",error="insufficient_scope"');
  });

  it('can() is false for any refusal, but a broken hook still fails', async () => {
    const broken = new Error('policy service down');
    const access = new AccessControl({
      authorize: ({ repository }) => {
        if (repository === 'denied') throw new OciError('DENIED');
        if (repository === 'unauthorized') throw new UnauthorizedError();
        if (repository === 'broken') throw broken;
        return repository === 'allowed';
      },
    });
    assert.equal(await access.can({}, 'pull', 'allowed'), true);
    assert.equal(await access.can({}, 'pull', 'other'), false);
    assert.equal(await access.can({}, 'pull', 'denied'), false);
    assert.equal(await access.can({}, 'pull', 'unauthorized'), false);
    await assert.rejects(access.can({}, 'pull', 'broken'), (e) => e === broken);
  });

  it('sameTenant follows tenantOf', () => {
    const hooks: AuthHooks = { tenantOf: (repository) => repository.split('/')[0] };
    const access = new AccessControl(hooks);
    assert.equal(access.sameTenant('acme/app', 'acme/lib'), true);
    assert.equal(access.sameTenant('acme/app', 'globex/app'), false);
  });

  it('a registry on the memory stores mounts only what the caller may pull, within its tenant', async () => {
    const metadata = new MemoryMetadataStore();
    const registry = createRegistry({
      blobs: new MemoryBlobStore(),
      metadata,
      authenticate: (r) => ({ user: String(r.headers['x-user']) }),
      authorize: ({ principal, action, repository }) =>
        (principal as { user: string }).user === 'root' || action !== 'pull' || !repository.endsWith('/secret'),
      tenantOf: (repository) => repository.split('/')[0],
    });
    const content = Buffer.from('layer');
    const digest = `sha256:${createHash('sha256').update(content).digest('hex')}`;
    for (const source of ['acme/secret', 'acme/open', 'globex/open'])
      await linkBlob(metadata, source, digest, content.length, source.split('/')[0]);
    const mount = async (user: string, target: string, from?: string) => {
      const query = `mount=${digest}${from ? `&from=${from}` : ''}`;
      const response = await registry.handle({
        method: 'POST',
        url: `/v2/${target}/blobs/uploads/?${query}`,
        headers: { 'x-user': user },
        body: Readable.from([]),
      });
      return response?.status;
    };
    assert.equal(await mount('dev', 'acme/new', 'acme/open'), 201);
    assert.equal(await mount('dev', 'acme/new2', 'acme/secret'), 202, 'no pull on the source: a plain session');
    assert.equal(await mount('root', 'acme/new3', 'acme/secret'), 201);
    assert.equal(await mount('root', 'initech/new', 'globex/open'), 202, 'never across tenants');
    assert.equal(await mount('root', 'initech/auto'), 202, 'automatic mount stays within the tenant too');
    assert.equal(await mount('dev', 'globex/auto'), 201, 'automatic mount from a pullable repository of the tenant');
    assert.deepEqual(await metadata.listBlobRepositories(digest), [
      'acme/new',
      'acme/new3',
      'acme/open',
      'acme/secret',
      'globex/auto',
      'globex/open',
    ]);
  });
});
