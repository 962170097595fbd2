import { createServer } from 'node:http';
import { createApp } from './app.js';

const port = Number(process.env.PORT ?? 3000);
const { app, registry } = await createApp(process.env.DATA_DIR ?? './data');
// Long blob uploads must not hit Node's whole-request timeout: Berth ends bodies that stall
// (bodyIdleTimeoutMs); headers must arrive within 30 s, checked every 5 s.
const server = createServer({ connectionsCheckingInterval: 5_000 }, app.callback());
server.requestTimeout = 0;
server.headersTimeout = 30_000;
server.listen(port, () => console.log(`task board on http://localhost:${port} (registry at /v2/)`));
const stop = () => server.close(() => registry.close().then(() => process.exit(0)));
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
