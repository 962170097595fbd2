import { connect, createServer, type Socket } from 'node:net';

export interface TcpProxy {
  /** `http://127.0.0.1:<port>`: point a client here instead of at the target. */
  url: string;
  port: number;
  /** Connections reset while cut. */
  readonly refused: number;
  /** Drop every connection and reset new ones: the target looks down. */
  cut(): void;
  /** Pass connections through again. */
  restore(): void;
  close(): Promise<void>;
}

/** A TCP proxy on loopback in front of `target`, which a test can cut and restore. */
export async function tcpProxy(target: { hostname: string; port: string | number }): Promise<TcpProxy> {
  const sockets = new Set<Socket>();
  let open = true;
  let refused = 0;
  const track = (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
  };
  const server = createServer((client) => {
    track(client);
    if (!open) {
      refused++;
      return client.resetAndDestroy();
    }
    const upstream = connect(Number(target.port), target.hostname);
    track(upstream);
    client.pipe(upstream).pipe(client);
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  // A proxy a test forgot to close must not keep the test process alive.
  server.unref();
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    get refused() {
      return refused;
    },
    cut() {
      open = false;
      for (const socket of sockets) socket.destroy();
    },
    restore() {
      open = true;
    },
    async close() {
      open = false;
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
