import type { RepositorySummary } from '@berthjs/core';
import type { User } from './users.js';

const text = (value: string) => value.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

const STYLE = `body{font:15px/1.45 system-ui,sans-serif;margin:0;background:#f4f5f7;color:#172b4d}
header{background:#0052cc;color:#fff;padding:12px 24px;display:flex;justify-content:space-between;align-items:center}
main{max-width:880px;margin:24px auto;padding:0 16px}section{background:#fff;border-radius:6px;padding:16px 20px;margin-bottom:20px;box-shadow:0 1px 2px #0002}
table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:6px 8px;border-bottom:1px solid #eee}code{font-size:13px}
form.login{max-width:320px;margin:80px auto;background:#fff;padding:24px;border-radius:6px;box-shadow:0 1px 2px #0002}
input{display:block;width:100%;margin:4px 0 12px;padding:6px;box-sizing:border-box}button{padding:6px 14px}.error{color:#bf2600}`;

function layout(title: string, body: string): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${text(title)}</title><style>${STYLE}</style></head><body>${body}</body></html>`;
}

export function signInPage(error?: string): string {
  return layout(
    'Sign in · Task board',
    `<form class="login" method="post" action="/login"><h1>Task board</h1>
${error ? `<p class="error">${text(error)}</p>` : ''}
<label>User <input name="username" autocomplete="username" required></label>
<label>Password <input name="password" type="password" autocomplete="current-password" required></label>
<button type="submit">Sign in</button></form>`,
  );
}

/** Megabytes with one decimal, as image sizes are usually shown. */
export function formatSize(bytes: number): string {
  return bytes < 1024 * 1024 ? `${(bytes / 1024).toFixed(1)} KiB` : `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

export function imagesTable(repositories: RepositorySummary[]): string {
  const rows = repositories.flatMap(({ repository, tags }) =>
    tags.map(
      ({ tag, digest, size }) =>
        `<tr><td>${text(repository)}</td><td>${text(tag)}</td><td>${formatSize(size)}</td><td><code>${text(digest.slice(0, 19))}</code></td></tr>`,
    ),
  );
  if (rows.length === 0)
    return '<p id="no-images">No images yet: push one to <code>&lt;this host&gt;/&lt;your team&gt;/&lt;name&gt;</code>.</p>';
  return `<table><thead><tr><th>repository</th><th>tag</th><th>size</th><th>digest</th></tr></thead><tbody>${rows.join('')}</tbody></table>`;
}

export function boardPage(user: User, tasks: { id: number; title: string }[], repositories: RepositorySummary[]): string {
  const taskItems = tasks.map((t) => `<li>${text(t.title)}</li>`).join('') || '<li>nothing to do</li>';
  return layout(
    `${user.team} · Task board`,
    `<header><strong>Task board · ${text(user.team)}</strong><form method="post" action="/logout">${text(user.username)} (${user.role})
<button type="submit">Sign out</button></form></header><main>
<section><h2>Tasks</h2><ul>${taskItems}</ul></section>
<section><h2>Images</h2><div id="images">${imagesTable(repositories)}</div></section></main>
<script>setInterval(async () => {
  const res = await fetch('/images.html');
  if (res.ok) document.getElementById('images').innerHTML = await res.text();
}, 1000);</script>`,
  );
}
