// One thread of the pull load generator (see pullRun in load.mjs): opens one keep-alive
// connection per blob it was given, and on 'go' pulls them all at once, hashing every byte.
import { parentPort, workerData } from 'node:worker_threads';
import { pullVerified, transferClient } from './load.mjs';

const { base, blobs } = workerData;
const clients = blobs.map(() => transferClient(base));

parentPort.once('message', async () => {
  try {
    await Promise.all(blobs.map((blob, i) => pullVerified(clients[i], blob.path, blob)));
    parentPort.postMessage({ ok: true });
  } catch (error) {
    parentPort.postMessage({ ok: false, message: error.message });
  } finally {
    await Promise.all(clients.map((c) => c.close()));
  }
});
parentPort.postMessage('ready');
