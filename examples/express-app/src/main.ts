import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { createDashboard } from './app.js';

const port = Number(process.env.PORT ?? 3001);
const { app, registry } = await createDashboard({
  dataDir: process.env.DATA_DIR ?? './data',
  publicUrl: process.env.PUBLIC_URL ?? `http://localhost:${port}`,
  tokenKey: process.env.TOKEN_KEY_FILE ? readFileSync(process.env.TOKEN_KEY_FILE, 'utf8') : undefined,
});
// Long blob uploads must not hit Node's whole-request timeout: Berth ends bodies that stall
// (bodyIdleTimeoutMs); headers must arrive within 30 s, checked every 5 s.
const server = createServer({ connectionsCheckingInterval: 5_000 }, app);
server.requestTimeout = 0;
server.headersTimeout = 30_000;
server.listen(port, () => console.log(`deploy dashboard on http://localhost:${port} (registry at /v2/, tokens at /token)`));
const stop = () => server.close(() => registry.close().then(() => process.exit(0)));
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
