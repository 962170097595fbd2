// The example apps' pages in a real browser (headless Chromium through playwright-core, with
// Debian's /usr/bin/chromium): sign in with a demo login, push an image with skopeo as that user,
// watch it appear on the page without a reload, and keep a screenshot
// (BERTH_SCREENSHOTS=<dir> keeps them there; the examples' READMEs show them).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, stat } from 'node:fs/promises';
import { createServer, type RequestListener, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { chromium, type BrowserContext } from 'playwright-core';
import { createDashboard } from '../examples/express-app/src/app.js';
import { createApp } from '../examples/koa-app/src/app.js';
import { createService } from '../examples/node-http/src/server.js';
import { makeOciLayout, requireCommand } from './support/oci-layout.js';

const run = promisify(execFile);
const CHROMIUM = '/usr/bin/chromium';
const skip =
  requireCommand('skopeo') || (existsSync(CHROMIUM) ? false : process.env.CI ? assert.fail(`${CHROMIUM} missing`) : 'no chromium');

/** Flags that work on a small VM with no network and no GPU. */
const FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

interface Example {
  name: string;
  start(dir: string): Promise<{ server: Server; base: string; close(): Promise<void> }>;
  login: [string, string];
  /** Field names of the sign-in form. */
  fields: [string, string];
  repository: string;
  heading: string;
}

async function listen(handler: RequestListener): Promise<{ server: Server; base: string }> {
  const server = createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, base: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

const EXAMPLES: Example[] = [
  {
    name: 'koa-app',
    async start(dir) {
      const { app, registry } = await createApp(dir);
      return { ...(await listen(app.callback())), close: () => registry.close() };
    },
    login: ['alice', 'alice-password'],
    fields: ['username', 'password'],
    repository: 'acme/board',
    heading: 'Task board · acme',
  },
  {
    name: 'express-app',
    async start(dir) {
      let base = '';
      const { app, registry } = await createDashboard({ dataDir: dir, publicUrl: () => base });
      const listening = await listen(app);
      base = listening.base;
      return { ...listening, close: () => registry.close() };
    },
    login: ['dana', 'dana-password'],
    fields: ['login', 'password'],
    repository: 'initech/web',
    heading: 'Deploy dashboard',
  },
  {
    name: 'node-http',
    async start(dir) {
      let base = '';
      const { server, registry } = await createService(dir, () => base);
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      return { server, base, close: () => registry.close() };
    },
    login: ['build-bot', 'bot-secret'],
    fields: ['account', 'secret'],
    repository: 'ci/app',
    heading: 'Build console',
  },
];

describe('example pages in Chromium', { skip }, () => {
  let browser: BrowserContext;
  let profile: string;
  before(async () => {
    profile = await mkdtemp(join(tmpdir(), 'berth-chromium-'));
    // A fresh --user-data-dir: playwright passes the profile directory itself.
    browser = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, args: FLAGS, timeout: 60_000 });
  });
  after(async () => {
    await browser?.close();
    if (profile) await rm(profile, { recursive: true, force: true });
  });

  for (const example of EXAMPLES) {
    it(`${example.name}: sign in, push an image, see it appear, take a screenshot`, async () => {
      const dir = await mkdtemp(join(tmpdir(), `berth-${example.name}-`));
      const app = await example.start(dir);
      const page = await browser.newPage();
      await page.setViewportSize({ width: 1100, height: 700 });
      try {
        await page.goto(app.base);
        await page.fill(`input[name=${example.fields[0]}]`, example.login[0]);
        await page.fill(`input[name=${example.fields[1]}]`, 'wrong');
        await page.click('form button');
        assert.match((await page.textContent('body')) ?? '', /wrong/i, 'a wrong password is refused');

        await page.fill(`input[name=${example.fields[0]}]`, example.login[0]);
        await page.fill(`input[name=${example.fields[1]}]`, example.login[1]);
        await Promise.all([page.waitForURL(`${app.base}/`), page.click('form button')]);
        assert.match((await page.textContent('body')) ?? '', new RegExp(example.heading));
        assert.doesNotMatch((await page.textContent('#images')) ?? '', new RegExp(example.repository));

        const { dir: image } = await makeOciLayout('v1', 1);
        try {
          const host = new URL(app.base).host;
          await run('skopeo', [
            '--insecure-policy',
            'copy',
            '--dest-tls-verify=false',
            '--dest-creds',
            example.login.join(':'),
            `oci:${join(image, 'layout')}:v1`,
            `docker://${host}/${example.repository}:v1`,
          ]);
        } finally {
          await rm(image, { recursive: true, force: true });
        }
        // The page refreshes its image list by itself.
        await page.waitForFunction((name) => document.getElementById('images')?.textContent?.includes(name), example.repository, {
          timeout: 15_000,
        });
        const images = (await page.textContent('#images')) ?? '';
        assert.match(images, /v1/);
        assert.match(images, /\d+(\.\d+)? (KiB|MiB|MB)/, 'a size');

        const shots = process.env.BERTH_SCREENSHOTS ?? join(dir, 'screenshots');
        await mkdir(shots, { recursive: true });
        const file = join(shots, `${example.name}.png`);
        await page.screenshot({ path: file });
        assert.ok((await stat(file)).size > 5000, 'a real screenshot');
      } finally {
        await page.close();
        app.server.closeAllConnections();
        await new Promise((resolve) => app.server.close(resolve));
        await app.close();
        await rm(dir, { recursive: true, force: true });
      }
    });
  }
});
