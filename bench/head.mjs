// A minimal HEAD load generator on raw keep-alive sockets. autocannon cannot drive HEAD against
// these servers: its parser waits for the body that Content-Length announces and a HEAD response
// never sends, so every request times out. A HEAD response ends at the blank line after the
// headers, which is all this client needs to parse.
import { connect } from 'node:net';

/** `connections` sockets each sending one HEAD at a time for `seconds`; returns { rps, p99, errors }. */
export async function headRate(url, { connections, seconds }) {
  const { hostname, port, pathname } = new URL(url);
  const request = Buffer.from(`HEAD ${pathname} HTTP/1.1\r\nHost: ${hostname}:${port}\r\nConnection: keep-alive\r\n\r\n`);
  const latencies = [];
  let errors = 0;
  const deadline = performance.now() + seconds * 1000;

  const worker = () =>
    new Promise((resolve, reject) => {
      const socket = connect({ host: hostname, port: Number(port), noDelay: true });
      let pending = '';
      let sentAt = 0;
      const send = () => {
        if (performance.now() >= deadline) {
          socket.end();
          return resolve();
        }
        sentAt = performance.now();
        socket.write(request);
      };
      socket.setEncoding('latin1');
      socket.on('connect', send);
      socket.on('error', reject);
      socket.on('data', (text) => {
        pending += text;
        let end;
        while ((end = pending.indexOf('\r\n\r\n')) !== -1) {
          const head = pending.slice(0, end);
          pending = pending.slice(end + 4);
          if (!head.startsWith('HTTP/1.1 200')) errors++;
          latencies.push(performance.now() - sentAt);
          send();
        }
      });
    });

  const started = performance.now();
  await Promise.all(Array.from({ length: connections }, worker));
  const elapsed = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  return {
    rps: latencies.length / elapsed,
    p99: latencies.length ? Math.round(latencies[Math.floor(latencies.length * 0.99)]) : 0,
    errors,
  };
}
