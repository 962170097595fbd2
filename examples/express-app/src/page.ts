import type { RepositorySummary } from '@berthjs/core';
import type { Account } from './users.js';

const html = (text: string) => text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const mib = (bytes: number) => `${(bytes / (1024 * 1024)).toFixed(2)} MB`;

function page(title: string, content: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${html(title)}</title><style>
body{margin:0;font-family:system-ui,sans-serif;background:#101418;color:#e6e8eb}
nav{padding:14px 28px;background:#1b2128;display:flex;gap:18px;align-items:center}nav .me{margin-left:auto}
.wrap{padding:24px 28px;display:grid;gap:22px}.card{background:#1b2128;border:1px solid #2b333d;border-radius:8px;padding:18px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(240px,1fr));gap:12px}
.image{border:1px solid #2b333d;border-radius:6px;padding:10px 12px}.image b{color:#7cc4ff}.muted{color:#8b96a3;font-size:13px}
input,button{font:inherit;padding:7px 10px;border-radius:5px;border:1px solid #3a4450;background:#101418;color:inherit}
.signin{max-width:300px;margin:12vh auto;display:grid;gap:10px}.bad{color:#ff8a80}
</style></head><body>${content}</body></html>`;
}

export function signInView(error?: string): string {
  return page(
    'Deploy dashboard',
    `<form class="signin card" method="post" action="/login"><h2>Deploy dashboard</h2>
${error ? `<div class="bad">${html(error)}</div>` : ''}
<input name="login" placeholder="login" autocomplete="username" required>
<input name="password" type="password" placeholder="password" autocomplete="current-password" required>
<button>Sign in</button></form>`,
  );
}

/** One card per tag of every repository of the account's organizations. */
export function imageCards(repositories: RepositorySummary[]): string {
  const cards = repositories.flatMap(({ repository, tags }) =>
    tags.map(
      (t) =>
        `<div class="image"><b>${html(repository)}:${html(t.tag)}</b><div class="muted">${mib(t.size)} · ${html(t.digest.slice(7, 19))}</div></div>`,
    ),
  );
  return cards.length > 0 ? `<div class="grid">${cards.join('')}</div>` : '<p class="muted" id="empty">Nothing pushed yet.</p>';
}

export function dashboardView(
  account: Account,
  deployments: { image: string; by: string; at: string }[],
  repositories: RepositorySummary[],
): string {
  const orgs = Object.entries(account.orgs)
    .map(([org, role]) => `${html(org)} (${role})`)
    .join(', ');
  const rows = deployments.map((d) => `<li>${html(d.image)} <span class="muted">by ${html(d.by)} at ${html(d.at)}</span></li>`).join('');
  return page(
    'Deploy dashboard',
    `<nav><strong>Deploy dashboard</strong><span class="muted">${orgs}</span>
<form class="me" method="post" action="/logout">${html(account.login)} <button>Sign out</button></form></nav>
<div class="wrap"><div class="card"><h3>Images</h3><div id="images">${imageCards(repositories)}</div></div>
<div class="card"><h3>Deployments</h3><ul>${rows || '<li class="muted">none yet</li>'}</ul></div></div>
<script>setInterval(() => fetch('/images.html').then((r) => r.ok && r.text()).then((t) => t && (document.getElementById('images').innerHTML = t)), 1000);</script>`,
  );
}
