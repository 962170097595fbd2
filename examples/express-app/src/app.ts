import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import express, { type Express, type NextFunction, type Request, type Response } from 'express';
import session from 'express-session';
import { basicAuth, createTokenEndpoint, readBasic, tokenAuth, type BasicPrincipal, type TokenKey } from '@berthjs/auth';
import { createRegistry, inventory, type AuthorizeRequest, type Registry, type RepositorySummary } from '@berthjs/core';
import { berth } from '@berthjs/express';
import { createSqlMetadataStore } from '@berthjs/metadata-sql';
import { FsBlobStore } from '@berthjs/storage-fs';
import { dashboardView, imageCards, signInView } from './page.js';
import { findAccount, verifyAccount, type Account } from './users.js';

declare module 'express-session' {
  interface SessionData {
    account?: Account;
  }
}

export interface DashboardOptions {
  dataDir: string;
  /** This app's public URL (or a function giving it once listening): the token realm is `<url>/token`. */
  publicUrl: string | (() => string);
  /** The PEM key signing registry tokens; default a fresh one per start (clients simply fetch new tokens). */
  tokenKey?: TokenKey['key'];
  /** Secret signing the pages' session cookies; default a fresh one per start (everyone signs in again). */
  sessionSecret?: string;
}

const SERVICE = 'deploy-dashboard';
/** Repositories are `<org>/<name>`; the org is the tenant. */
const orgOf = (repository: string) => repository.split('/')[0];

/** The dashboard's rule: deployers push and pull in their org, watchers pull. Nobody deletes. */
function mayAccess({ principal, action, repository }: AuthorizeRequest): boolean {
  const account = principal === undefined ? undefined : findAccount((principal as BasicPrincipal).username);
  const role = account?.orgs[orgOf(repository)];
  return role === 'deployer' ? action !== 'delete' : role === 'watcher' && action === 'pull';
}

export async function createDashboard(options: DashboardOptions): Promise<{ app: Express; registry: Registry }> {
  const key = options.tokenKey ?? generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  const publicUrl = typeof options.publicUrl === 'string' ? () => options.publicUrl as string : options.publicUrl;
  const logins = basicAuth({ verifyPassword: (login, password) => verifyAccount(login, password) !== undefined });
  // `docker login` / `skopeo login` get tokens here; the grants come from the dashboard's own rule.
  const tokens = createTokenEndpoint({
    signingKey: { key },
    service: SERVICE,
    issuer: SERVICE,
    authenticate: logins.authenticate,
    authorize: mayAccess,
    anonymous: false,
  });
  const metadata = await createSqlMetadataStore({ filename: join(options.dataDir, 'registry.sqlite') });
  const registry = createRegistry({
    blobs: new FsBlobStore({ root: join(options.dataDir, 'blobs') }),
    metadata,
    ...tokenAuth({ realm: () => `${publicUrl()}/token`, service: SERVICE, issuer: SERVICE, keys: [{ key }] }),
    tenantOf: orgOf,
  });

  const deployments: { org: string; image: string; by: string; at: string }[] = [];
  const app = express();
  // Berth and its token endpoint first: they read raw request streams.
  app.use(berth(tokens));
  app.use(berth(registry));

  app.get('/health', (_req, res) => {
    res.json({ ok: true });
  });

  // The dashboard's pages: signed in with a form and a session cookie.
  app.use(
    session({
      name: 'dashboard.sid',
      secret: options.sessionSecret ?? randomBytes(32).toString('hex'),
      resave: false,
      saveUninitialized: false,
      cookie: { httpOnly: true, sameSite: 'lax' },
    }),
  );
  /** Every repository of the account's organizations. */
  const imagesOf = async (account: Account): Promise<RepositorySummary[]> =>
    (await Promise.all(Object.keys(account.orgs).map((org) => inventory(metadata, { prefix: `${org}/` })))).flat();
  app.get('/', async (req, res) => {
    const { account } = req.session;
    if (!account) return void res.send(signInView());
    res.send(
      dashboardView(
        account,
        deployments.filter((d) => d.org in account.orgs),
        await imagesOf(account),
      ),
    );
  });
  app.get('/images.html', async (req, res) => {
    if (!req.session.account) return void res.sendStatus(401);
    res.send(imageCards(await imagesOf(req.session.account)));
  });
  app.post('/login', express.urlencoded({ extended: false, limit: '4kb' }), (req, res) => {
    const account = verifyAccount(String(req.body?.login ?? ''), String(req.body?.password ?? ''));
    if (!account) return void res.status(401).send(signInView('Wrong login or password.'));
    req.session.regenerate(() => {
      req.session.account = account;
      res.redirect(303, '/');
    });
  });
  app.post('/logout', (req, res) => {
    req.session.destroy(() => res.redirect(303, '/'));
  });
  const api = express.Router();
  api.use(express.json(), requireAccount);
  api.get('/me', (_req, res) => {
    res.json(res.locals.account);
  });
  api.get('/deployments', (_req, res) => {
    const account: Account = res.locals.account;
    res.json({ deployments: deployments.filter((d) => d.org in account.orgs) });
  });
  api.post('/deployments', (req, res) => {
    const account: Account = res.locals.account;
    const image = String(req.body?.image ?? '');
    if (account.orgs[orgOf(image)] !== 'deployer') {
      res.status(403).json({ error: `you may not deploy ${image}` });
      return;
    }
    const deployment = { org: orgOf(image), image, by: account.login, at: new Date().toISOString() };
    deployments.push(deployment);
    res.status(201).json(deployment);
  });
  app.use('/api', api);
  return { app, registry };
}

/** The dashboard's own auth for its JSON API: the page's session, or the same accounts' Basic credentials. */
function requireAccount(req: Request, res: Response, next: NextFunction) {
  let account: Account | undefined = req.session.account;
  if (!account)
    try {
      const credentials = readBasic(req);
      account = credentials && verifyAccount(credentials.username, credentials.password);
    } catch {
      account = undefined;
    }
  if (!account) {
    res.status(401).set('WWW-Authenticate', 'Basic realm="dashboard"').json({ error: 'log in first' });
    return;
  }
  res.locals.account = account;
  next();
}
