// `berth serve` as operators see it: Prometheus metrics on a port of their own after scripted
// pushes and pulls, request log lines, request ids, /healthz and /readyz.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { randomBlob, rawRequest, sha256, TestClient } from './support/client.js';
import { spawnBerth, type BerthProcess } from './support/cli.js';

/** `name{labels} value` lines of a scrape, as a map from `name{labels}` to value. */
function parseMetrics(text: string): Map<string, number> {
  const samples = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const space = line.lastIndexOf(' ');
    samples.set(line.slice(0, space), Number(line.slice(space + 1)));
  }
  return samples;
}

describe('berth serve in production', () => {
  let dir: string;
  let berth: BerthProcess;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'berth-ops-'));
    berth = await spawnBerth(['--data-dir', dir, '--metrics-port', '0', '--trust-proxy']);
  });
  after(async () => {
    await berth?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  const scrape = async () => {
    const res = await fetch(berth.metricsUrl!);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type')!, /^text\/plain; version=0\.0\.4/);
    return parseMetrics(await res.text());
  };

  it('serves metrics on their own listener only', async () => {
    assert.ok(berth.metricsUrl && new URL(berth.metricsUrl).port !== new URL(berth.url).port);
    assert.equal((await rawRequest(berth.url, '/metrics')).status, 404);
    const samples = await scrape();
    assert.ok(samples.has('process_cpu_user_seconds_total'), 'default process metrics');
    assert.ok(samples.has('nodejs_eventloop_lag_seconds'));
  });

  it('counts requests, durations and blob bytes after pushes and pulls', async () => {
    const before = await scrape();
    const client = new TestClient(berth.url);
    const data = randomBlob(3 * 1024 * 1024 + 5);
    const digest = sha256(data);
    // Pushed twice: monolithic (POST+PUT), then chunked into another repository.
    await client.pushBlob('ops/a', data);
    const start = await rawRequest(berth.url, '/v2/ops/b/blobs/uploads/', { method: 'POST' });
    let location = start.header('location')!;
    const half = Math.floor(data.length / 2);
    for (const [from, to] of [
      [0, half],
      [half, data.length],
    ]) {
      const res = await rawRequest(berth.url, location, {
        method: 'PATCH',
        body: data.subarray(from, to),
        headers: { 'Content-Range': `${from}-${to - 1}` },
      });
      assert.equal(res.status, 202);
      location = res.header('location')!;
    }
    assert.equal((await rawRequest(berth.url, `${location}?digest=${digest}`, { method: 'PUT' })).status, 201);
    // Pulled three times (once through a range), HEADed twice.
    for (const repository of ['ops/a', 'ops/b', 'ops/a']) {
      const res = await rawRequest(berth.url, `/v2/${repository}/blobs/${digest}`);
      assert.equal(sha256(res.body), digest);
    }
    const ranged = await rawRequest(berth.url, `/v2/ops/a/blobs/${digest}`, { headers: { Range: 'bytes=0-99' } });
    assert.equal(ranged.status, 206);
    for (let i = 0; i < 2; i++) assert.equal((await rawRequest(berth.url, `/v2/ops/a/blobs/${digest}`, { method: 'HEAD' })).status, 200);
    assert.equal((await rawRequest(berth.url, '/v2/ops/a/manifests/missing')).status, 404);
    await sleep(100);

    const now = await scrape();
    const delta = (name: string) => (now.get(name) ?? 0) - (before.get(name) ?? 0);
    assert.equal(delta('berth_http_requests_total{method="GET",route="blob",status="200"}'), 3);
    assert.equal(delta('berth_http_requests_total{method="GET",route="blob",status="206"}'), 1);
    assert.equal(delta('berth_http_requests_total{method="HEAD",route="blob",status="200"}'), 2);
    assert.equal(delta('berth_http_requests_total{method="PATCH",route="upload",status="202"}'), 2);
    assert.equal(delta('berth_http_requests_total{method="GET",route="manifest",status="404"}'), 1);
    assert.equal(delta('berth_blob_bytes_received_total'), 2 * data.length);
    assert.equal(delta('berth_blob_bytes_sent_total'), 3 * data.length + 100);
    // The histogram: every request lands in +Inf; the 3 full pulls took more than 0 s each.
    assert.equal(delta('berth_http_request_duration_seconds_count{method="GET",route="blob"}'), 4);
    assert.equal(delta('berth_http_request_duration_seconds_bucket{le="+Inf",method="GET",route="blob"}'), 4);
    assert.ok(delta('berth_http_request_duration_seconds_sum{method="GET",route="blob"}') > 0);
    assert.ok(delta('berth_cache_hits_total{cache="blobs"}') >= 2, 'blob HEADs hit the read cache');
    assert.equal(now.get('berth_uploads_in_progress'), 0);
    // Labels are bounded: repository names never appear.
    for (const name of now.keys()) assert.doesNotMatch(name, /ops\/a|ops\/b/);
  });

  it('logs one JSON line per request: ISO time, level name, id, route, repository, bytes, client', async () => {
    const data = randomBlob(1000);
    const before = berth.logs.length;
    const res = await rawRequest(berth.url, `/v2/logs/app/blobs/uploads/?digest=${sha256(data)}`, {
      method: 'POST',
      body: data,
      headers: { 'X-Request-Id': 'ci-run-7', 'X-Forwarded-For': '192.0.2.44' },
    });
    assert.equal(res.status, 201);
    assert.equal(res.header('x-request-id'), 'ci-run-7');
    const fresh = await rawRequest(berth.url, '/v2/');
    assert.match(fresh.header('x-request-id')!, /^[0-9a-f-]{36}$/);
    await sleep(100);
    const lines = berth.logs.slice(before);
    assert.equal(lines.length, 2, JSON.stringify(lines));
    const line = lines.find((l) => l.requestId === 'ci-run-7')!;
    assert.equal(line.level, 'info');
    assert.match(line.time as string, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    assert.equal(line.msg, 'request');
    assert.deepEqual(
      [line.method, line.route, line.repository, line.status, line.bytesIn, line.bytesOut, line.client, line.aborted],
      ['POST', 'uploads', 'logs/app', 201, 1000, 0, '192.0.2.44', false],
    );
    assert.equal(typeof line.durationMs, 'number');
    assert.equal(lines.find((l) => l.requestId === fresh.header('x-request-id'))?.route, 'base');
  });

  it('answers /healthz and /readyz, which stay out of the info log', async () => {
    const before = berth.logs.length;
    const live = await rawRequest(berth.url, '/healthz');
    assert.deepEqual([live.status, live.json()], [200, { status: 'ok' }]);
    const ready = await rawRequest(berth.url, '/readyz');
    assert.equal(ready.status, 200);
    assert.deepEqual(ready.json(), { status: 'ready', blobs: { store: 'fs', ok: true }, metadata: { store: 'sqlite', ok: true } });
    assert.ok(ready.header('x-request-id'));
    await sleep(50);
    assert.deepEqual(
      berth.logs.slice(before).filter((l) => l.msg === 'request'),
      [],
    );
  });
});
