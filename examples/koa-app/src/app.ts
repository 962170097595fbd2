import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import Router from '@koa/router';
import Koa, { type Context } from 'koa';
import session from 'koa-session';
import { basicAuth, readBasic, type BasicPrincipal } from '@berthjs/auth';
import { createRegistry, inventory, type Action, type AuthorizeRequest } from '@berthjs/core';
import { berth } from '@berthjs/koa';
import { createSqlMetadataStore } from '@berthjs/metadata-sql';
import { FsBlobStore } from '@berthjs/storage-fs';
import { boardPage, imagesTable, signInPage } from './page.js';
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

/** The fields of a small urlencoded form (the sign-in form); larger bodies are refused. */
async function readForm(ctx: Context, limit = 4096): Promise<URLSearchParams> {
  let body = '';
  for await (const chunk of ctx.req) {
    body += chunk;
    if (body.length > limit) ctx.throw(413, 'form too large');
  }
  return new URLSearchParams(body);
}

export async function createApp(dataDir: string, { sessionKey = randomBytes(32).toString('hex') } = {}) {
  const metadata = await createSqlMetadataStore({ filename: join(dataDir, 'registry.sqlite') });
  const registry = createRegistry({
    blobs: new FsBlobStore({ root: join(dataDir, 'blobs') }),
    metadata,
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
  // The board's pages: signed in with a form and a session cookie.
  const images = (user: User) => inventory(metadata, { prefix: `${user.team}/` });
  router.get('/', async (ctx) => {
    const user: User | undefined = ctx.session?.user;
    ctx.body = user ? boardPage(user, tasks.get(user.team) ?? [], await images(user)) : signInPage();
  });
  router.get('/images.html', async (ctx) => {
    const user: User | undefined = ctx.session?.user;
    if (!user) {
      ctx.status = 401;
      return;
    }
    ctx.body = imagesTable(await images(user));
  });
  router.post('/login', async (ctx) => {
    const form = await readForm(ctx);
    const user = checkPassword(form.get('username') ?? '', form.get('password') ?? '');
    if (!user) {
      ctx.status = 401;
      ctx.body = signInPage('Wrong user or password.');
      return;
    }
    ctx.session!.user = user;
    ctx.redirect('/');
  });
  router.post('/logout', (ctx) => {
    ctx.session = null;
    ctx.redirect('/');
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
  app.keys = [sessionKey];
  // Berth first, before any body parser or session: it owns /v2 and runs the auth hooks itself.
  app.use(berth(registry));
  app.use(session({ key: 'board.session', httpOnly: true, sameSite: 'lax' }, app));
  // The app's own auth for its JSON API: the page's session, or the same users' Basic credentials.
  app.use(async (ctx, next) => {
    if (!ctx.path.startsWith('/api/')) return next();
    let user: User | undefined = ctx.session?.user;
    if (!user)
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
