// Blob GETs through each adapter, as a host app mounts it, go out with sendfile(2) on fs storage:
// the body bytes never pass through the server's Node sockets, and what arrives is the blob.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { createRegistry } from '@berthjs/core';
import { sendfileAvailable } from '@berthjs/sendfile';
import { hostApp, type AdapterName } from './support/servers.js';
import { embeddedStores } from './support/stores.js';
import { TestClient, randomBlob, sha256 } from './support/client.js';

const MiB = 1024 * 1024;

describe('blob downloads by sendfile', { skip: !sendfileAvailable && 'no sendfile(2) here' }, () => {
  for (const adapter of ['koa', 'express'] as AdapterName[]) {
    it(`${adapter}: GET and ranged GET of a blob bypass Node's sockets`, async (t) => {
      const stores = await embeddedStores();
      const registry = createRegistry(await stores.open());
      const server = createServer(hostApp(adapter, registry));
      let bytesThroughNode = 0;
      server.on('connection', (socket: Socket) => socket.once('close', () => (bytesThroughNode += socket.bytesWritten)));
      server.listen(0, '127.0.0.1');
      await once(server, 'listening');
      t.after(async () => {
        server.closeAllConnections();
        server.close();
        await registry.close();
        await stores.destroy();
      });
      const client = new TestClient(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
      const blob = randomBlob(16 * MiB + 7);
      const digest = await client.pushBlob('zero/copy', blob);
      await new Promise((r) => setTimeout(r, 50)); // the push's connection closes and is counted
      const before = bytesThroughNode;

      const whole = await client.req(`/v2/zero/copy/blobs/${digest}`);
      assert.equal(whole.status, 200);
      assert.equal(sha256(whole.body), digest);
      const part = await client.req(`/v2/zero/copy/blobs/${digest}`, { headers: { Range: 'bytes=100-1048675' } });
      assert.equal(part.status, 206);
      assert.ok(part.body.equals(blob.subarray(100, 1048676)));

      server.closeAllConnections();
      await new Promise((r) => setTimeout(r, 50));
      const sentByNode = bytesThroughNode - before;
      assert.ok(sentByNode < 8192, `${sentByNode} bytes of two blob responses went through Node`);
    });
  }
});
