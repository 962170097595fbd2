import { createService } from './server.js';

const port = Number(process.env.PORT ?? 3002);
const publicUrl = process.env.PUBLIC_URL ?? `http://localhost:${port}`;
const { server, registry } = await createService(process.env.DATA_DIR ?? './data', () => publicUrl);
server.listen(port, () => console.log(`node-http service on ${publicUrl} (registry at /v2/, tokens at /token)`));
const stop = () => server.close(() => registry.close().then(() => process.exit(0)));
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
