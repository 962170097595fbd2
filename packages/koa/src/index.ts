import { isFileRangeBody, watchSend, writeBody, type BerthHandler, type BerthResponse, type NodeWriteOptions } from '@berthjs/core';
import type { Middleware } from 'koa';

/**
 * Koa middleware serving the OCI Distribution API under `/v2` (or any other `BerthHandler`, such
 * as the token endpoint of @berthjs/auth); other paths go to `next()`.
 * It only translates: the request stream is handed over unread (mount no body parser in front
 * of `/v2`), and status, headers and body go back through Koa's own `ctx`, so host middleware
 * (logging, metrics, compression) sees and may change the response. `options.sendfile`: see
 * NodeWriteOptions.
 */
export function berth(registry: BerthHandler, options: NodeWriteOptions = {}): Middleware {
  return async (ctx, next) => {
    const { req } = ctx;
    const response = await registry.handle({
      method: ctx.method,
      url: ctx.url,
      headers: ctx.headers,
      body: req,
      remoteAddress: req.socket?.remoteAddress,
    });
    if (!response) return next();
    write(ctx, response, options);
  };
}

function write(ctx: Parameters<Middleware>[0], response: BerthResponse, options: NodeWriteOptions): void {
  ctx.status = response.status;
  ctx.set(response.headers);
  // HEAD keeps our Content-Length; Koa itself sends no body for HEAD.
  if (ctx.method === 'HEAD') return;
  // Koa would otherwise answer an empty 201/202 with its status text as body.
  const body = response.body ?? Buffer.alloc(0);
  ctx.body = body;
  const idleTimeoutMs = response.idleTimeoutMs ?? 0;
  // Koa writes it: whatever it writes, a client that reads nothing of it for that long is cut.
  if (options.sendfile === false || !isFileRangeBody(body)) {
    watchSend(ctx.res, idleTimeoutMs);
    return;
  }
  // Koa reads ctx.respond once, after every middleware returned and just before it writes the
  // body. If the body is still this file range then (no middleware replaced it, as compression
  // does), the core's writer sends it, by sendfile(2) where the connection allows, and Koa stands back.
  let respond: unknown;
  Object.defineProperty(ctx, 'respond', {
    configurable: true,
    enumerable: true,
    get() {
      if (respond !== undefined || !ctx.writable) return respond;
      if (ctx.body !== body) {
        watchSend(ctx.res, idleTimeoutMs);
        return (respond = true);
      }
      writeBody(ctx.res, body, { idleTimeoutMs, ...options }).catch((error: Error) => ctx.onerror(error));
      return (respond = false);
    },
    set(value: unknown) {
      respond = value;
    },
  });
}
