import { join } from 'node:path';
import Router from '@koa/router';
import Koa from 'koa';
import { basicAuth, readBasic, type BasicPrincipal } from '@berthjs/auth';
import { createRegistry, type Action, type AuthorizeRequest } from '@berthjs/core';
import { berth } from '@berthjs/koa';
import { createSqlMetadataStore } from '@berthjs/metadata-sql';
import { FsBlobStore } from '@berthjs/storage-fs';
import { checkPassword, findUser, type User } from './users.js';

/** What each role may do in its own team's repositories. */
const ROLE_ACTIONS: Record<User['role'], Action[]> = {
  viewer: ['pull'],
  developer: ['pull', 'push'],
  admin: ['pull', 'push', 'delete'],
};

/** Repositories are `<team>/<name>`; the team is the tenant. */
const teamOf = (repository: string) => repository.split('/')[0];

/** The app's own rule, used for the registry too: a user acts only in their team, as their role allows. */
function mayAccess({ principal, action, repository }: AuthorizeRequest): boolean {
  const user = principal === undefined ? undefined : findUser((principal as BasicPrincipal).username);
  return user !== undefined && user.team === teamOf(repository) && ROLE_ACTIONS[user.role].includes(action);
}

export async function createApp(dataDir: string) {
  const registry = createRegistry({
    blobs: new FsBlobStore({ root: join(dataDir, 'blobs') }),
    metadata: await createSqlMetadataStore({ filename: join(dataDir, 'registry.sqlite') }),
    ...basicAuth({ verifyPassword: (username, password) => checkPassword(username, password) !== undefined, realm: 'task board' }),
    authorize: mayAccess,
    tenantOf: teamOf,
  });

  // The board's own data: tasks per team, and an activity feed the registry's events feed into.
  const tasks = new Map<string, { id: number; title: string }[]>([['acme', [{ id: 1, title: 'ship the app image' }]]]);
  const activity: { team: string; repository: string; tags: string[]; digest: string }[] = [];
  registry.events.on('manifest.pushed', ({ repository, tags, digest }) =>
    activity.push({ team: teamOf(repository), repository, tags, digest }),
  );

  const router = new Router();
  router.get('/health', (ctx) => {
    ctx.body = { ok: true };
  });
  router.get('/api/me', (ctx) => {
    ctx.body = ctx.state.user;
  });
  router.get('/api/tasks', (ctx) => {
    ctx.body = { tasks: tasks.get(ctx.state.user.team) ?? [] };
  });
  router.get('/api/activity', (ctx) => {
    ctx.body = { pushes: activity.filter((a) => a.team === ctx.state.user.team) };
  });

  const app = new Koa();
  // Berth first, before any body parser: it owns /v2 and runs the auth hooks itself.
  app.use(berth(registry));
  // The app's own auth for its JSON API (same users, same Basic credentials).
  app.use(async (ctx, next) => {
    if (!ctx.path.startsWith('/api/')) return next();
    let user: User | undefined;
    try {
      const credentials = readBasic(ctx.request);
      user = credentials && checkPassword(credentials.username, credentials.password);
    } catch {
      user = undefined;
    }
    if (!user) {
      ctx.status = 401;
      ctx.set('WWW-Authenticate', 'Basic realm="task board"');
      ctx.body = { error: 'log in first' };
      return;
    }
    ctx.state.user = user;
    await next();
  });
  app.use(router.routes());
  app.use(router.allowedMethods());
  return { app, registry };
}
