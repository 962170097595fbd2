import type { BerthHandler, BerthResponse } from '@berthjs/core';
import type { Middleware } from 'koa';

/**
 * Koa middleware serving the OCI Distribution API under `/v2` (or any other `BerthHandler`, such
 * as the token endpoint of @berthjs/auth); other paths go to `next()`.
 * It only translates: the request stream is handed over unread (mount no body parser in front
 * of `/v2`), and status, headers and body go back through Koa's own `ctx`, so host middleware
 * (logging, metrics) sees the response. Do not compress `/v2` responses: that drops Content-Length.
 */
export function berth(registry: BerthHandler): Middleware {
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
    write(ctx, response);
  };
}

function write(ctx: Parameters<Middleware>[0], response: BerthResponse): void {
  ctx.status = response.status;
  ctx.set(response.headers);
  // HEAD keeps our Content-Length; Koa itself sends no body for HEAD.
  if (ctx.method === 'HEAD') return;
  // Koa would otherwise answer an empty 201/202 with its status text as body.
  ctx.body = response.body ?? Buffer.alloc(0);
}
