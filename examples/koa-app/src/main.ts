import { createServer } from 'node:http';
import { createApp } from './app.js';

const port = Number(process.env.PORT ?? 3000);
const { app, registry } = await createApp(process.env.DATA_DIR ?? './data');
const server = createServer(app.callback());
// Long blob uploads must not hit Node's default request timeout.
server.requestTimeout = 0;
server.listen(port, () => console.log(`task board on http://localhost:${port} (registry at /v2/)`));
const stop = () => server.close(() => registry.close().then(() => process.exit(0)));
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
