// The service's own page at `/`: sign in with one of its users and watch the `ci/` builds arrive.
// Plain node:http, so the form, the cookie session and the HTML are written out by hand.
import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { inventory, type MetadataStore, type RepositorySummary } from '@berthjs/core';

const escapeHtml = (value: string) => value.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const COOKIE = 'console.sid';
/** Sessions live as long as the process; this is a demo service. */
const MAX_SESSIONS = 1000;

const CSS = `*{box-sizing:border-box}body{margin:0;font:14px/1.5 ui-sans-serif,system-ui,sans-serif;background:#101418;color:#d8dee9}
nav{display:flex;gap:16px;align-items:center;padding:10px 20px;background:#1b2129;border-bottom:1px solid #2e3440}
nav b{flex:1;color:#88c0d0}article{max-width:820px;margin:28px auto;padding:0 16px}
.card{background:#1b2129;border:1px solid #2e3440;border-radius:8px;padding:14px 18px;margin-bottom:16px}
table{width:100%;border-collapse:collapse}th,td{padding:6px 10px;text-align:left;border-bottom:1px solid #2e3440}
th{color:#81a1c1;font-weight:600}code{color:#a3be8c}.signin{max-width:300px;margin:90px auto}
.signin input{width:100%;margin:4px 0 10px;padding:7px;background:#101418;color:inherit;border:1px solid #434c5e;border-radius:4px}
button{background:#5e81ac;color:#fff;border:0;border-radius:4px;padding:6px 14px;cursor:pointer}.bad{color:#bf616a}`;

function html(title: string, body: string): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)}</title><style>${CSS}</style></head><body>${body}</body></html>`;
}

function signIn(problem?: string): string {
  return html(
    'Build console · sign in',
    `<form class="card signin" method="post" action="/login"><h2>Build console</h2>
${problem ? `<p class="bad">${escapeHtml(problem)}</p>` : ''}
<label>Account <input name="account" autocomplete="username" required></label>
<label>Password <input name="secret" type="password" autocomplete="current-password" required></label>
<button>Sign in</button></form>`,
  );
}

const size = (bytes: number) => (bytes >= 1 << 20 ? `${(bytes / (1 << 20)).toFixed(1)} MiB` : `${(bytes / 1024).toFixed(1)} KiB`);

function builds(repositories: RepositorySummary[], pushes: number): string {
  const rows = repositories.flatMap(({ repository, tags }) =>
    tags.map(
      (t) =>
        `<tr><td>${escapeHtml(repository)}:${escapeHtml(t.tag)}</td><td>${size(t.size)}</td><td><code>${escapeHtml(t.digest.slice(7, 19))}</code></td></tr>`,
    ),
  );
  const table =
    rows.length === 0
      ? '<p>No builds yet. The build bot pushes to <code>ci/&lt;name&gt;</code>.</p>'
      : `<table><tr><th>image</th><th>size</th><th>digest</th></tr>${rows.join('')}</table>`;
  return `${table}<p>${pushes} push${pushes === 1 ? '' : 'es'} since this service started.</p>`;
}

function consolePage(account: string, repositories: RepositorySummary[], pushes: number): string {
  return html(
    'Build console',
    `<nav><b>Build console</b><span>${escapeHtml(account)}</span><form method="post" action="/logout"><button>Sign out</button></form></nav>
<article><div class="card"><h3>Builds</h3><div id="images">${builds(repositories, pushes)}</div></div></article>
<script>setInterval(async () => {
  const res = await fetch('/images.html');
  if (res.ok) document.getElementById('images').innerHTML = await res.text();
}, 1000);</script>`,
  );
}

/** Reads a small urlencoded form; undefined when it is larger than `limit` bytes. */
async function readForm(req: IncomingMessage, limit = 4096): Promise<URLSearchParams | undefined> {
  let body = '';
  for await (const chunk of req) {
    body += chunk;
    if (body.length > limit) return undefined;
  }
  return new URLSearchParams(body);
}

function send(res: ServerResponse, status: number, body: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'Content-Type': 'text/html; charset=utf-8', ...headers }).end(body);
}

/**
 * The console's routes; resolves to false for a path it does not own. `checkPassword` is the
 * service's own user check, the same one its token endpoint uses.
 */
export function createConsole(metadata: MetadataStore, checkPassword: (user: string, password: string) => boolean, pushes: () => number) {
  const sessions = new Map<string, string>();
  const sidOf = (req: IncomingMessage) => /(?:^|;\s*)console\.sid=([0-9a-f]+)/.exec(req.headers.cookie ?? '')?.[1];
  const list = () => inventory(metadata, { prefix: 'ci/' });
  const login = async (req: IncomingMessage, res: ServerResponse) => {
    const form = await readForm(req);
    if (!form) return send(res, 413, signIn('That form was too large.'));
    const user = form.get('account') ?? '';
    if (!checkPassword(user, form.get('secret') ?? '')) return send(res, 401, signIn('Wrong account or password.'));
    if (sessions.size >= MAX_SESSIONS) sessions.delete(sessions.keys().next().value as string);
    const fresh = randomBytes(24).toString('hex');
    sessions.set(fresh, user);
    send(res, 303, '', { Location: '/', 'Set-Cookie': `${COOKIE}=${fresh}; HttpOnly; SameSite=Lax; Path=/` });
  };

  return async (req: IncomingMessage, res: ServerResponse): Promise<boolean> => {
    const route = `${req.method} ${(req.url ?? '/').split('?')[0]}`;
    const sid = sidOf(req);
    const account = sid === undefined ? undefined : sessions.get(sid);
    switch (route) {
      case 'GET /':
        send(res, 200, account ? consolePage(account, await list(), pushes()) : signIn());
        return true;
      case 'GET /images.html':
        if (account) send(res, 200, builds(await list(), pushes()));
        else send(res, 401, '');
        return true;
      case 'POST /login':
        await login(req, res);
        return true;
      case 'POST /logout':
        if (sid !== undefined) sessions.delete(sid);
        send(res, 303, '', { Location: '/', 'Set-Cookie': `${COOKIE}=; Max-Age=0; Path=/` });
        return true;
      default:
        return false;
    }
  };
}
