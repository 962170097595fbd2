// berthMetrics on an embedded registry (memory stores): request counters and the GC counters fed
// by gc.completed.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { describe, it } from 'node:test';
import { createRegistry } from '@berthjs/core';
import { Faults, MemoryBlobStore, MemoryMetadataStore } from '@berthjs/testkit';
import { berthMetrics } from '../src/index.js';

const request = (method: string, url: string, body: Buffer = Buffer.alloc(0)) => ({
  method,
  url,
  headers: { 'content-length': String(body.length) },
  body: Readable.from(body.length ? [body] : []),
});

async function scrape(handler: ReturnType<typeof berthMetrics>['handler']): Promise<string> {
  const res = await handler.handle(request('GET', '/metrics'));
  assert.equal(res?.status, 200);
  return String(res?.body);
}

describe('berthMetrics', () => {
  it('counts requests, and GC runs with the bytes they freed', async () => {
    const registry = createRegistry({ blobs: new MemoryBlobStore(), metadata: new MemoryMetadataStore() });
    const metrics = berthMetrics(registry);
    const data = Buffer.from('an unreferenced layer');
    const digest = `sha256:${createHash('sha256').update(data).digest('hex')}`;
    const push = await registry.handle(request('POST', `/v2/gc/app/blobs/uploads/?digest=${digest}`, data));
    assert.equal(push?.status, 201);
    await new Promise((resolve) => setImmediate(resolve));
    let text = await scrape(metrics.handler);
    assert.match(text, /berth_http_requests_total\{method="POST",route="uploads",status="201"\} 1/);
    assert.match(text, new RegExp(`berth_blob_bytes_received_total ${data.length}`));

    await registry.collectGarbage({ dryRun: true, gracePeriodMs: 0 });
    const report = await registry.collectGarbage({ gracePeriodMs: 0 });
    assert.equal(report.blobsDeleted, 1);
    text = await scrape(metrics.handler);
    assert.match(text, /berth_gc_runs_total\{result="ok"\} 1\n/, 'the dry run is not counted');
    assert.match(text, /berth_gc_blobs_deleted_total 1\n/);
    assert.match(text, new RegExp(`berth_gc_bytes_freed_total ${data.length}\\n`));
    // No repository name in any label.
    assert.doesNotMatch(text, /gc\/app/);
    metrics.close();
    await registry.close();
  });

  it('counts a collection that fails, with what it freed before', async () => {
    const faults = new Faults();
    const registry = createRegistry({ blobs: new MemoryBlobStore(), metadata: faults.wrap(new MemoryMetadataStore()) });
    const metrics = berthMetrics(registry);
    faults.fail('listRepositories', new Error('database went away'));
    await assert.rejects(registry.collectGarbage({ gracePeriodMs: 0 }), /database went away/);
    const text = await scrape(metrics.handler);
    assert.match(text, /berth_gc_runs_total\{result="failed"\} 1\n/);
    metrics.close();
    await registry.close();
  });
});
