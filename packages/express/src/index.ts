import { writeBody, type BerthHandler, type NodeWriteOptions } from '@berthjs/core';
import type { RequestHandler } from 'express';

/**
 * Express middleware serving the OCI Distribution API under `/v2` (or any other `BerthHandler`,
 * such as the token endpoint of @berthjs/auth); other paths go to `next()`.
 * It only translates: the request stream is handed over unread (mount no body parser in front of
 * `/v2`), and bodies are written by the core's Node writer (Buffers, streams, fs blobs by
 * sendfile(2) where the connection allows: see NodeWriteOptions), so Express adds no charset and
 * keeps Content-Length. Protocol errors are already responses; only adapter failures reach `next(err)`.
 */
export function berth(registry: BerthHandler, options: NodeWriteOptions = {}): RequestHandler {
  return (req, res, next) => {
    const request = { method: req.method, url: req.url, headers: req.headers, body: req, remoteAddress: req.socket?.remoteAddress };
    registry.handle(request).then((response) => {
      if (!response) return next();
      res.status(response.status);
      for (const [name, value] of Object.entries(response.headers)) res.setHeader(name, value);
      // A client that goes away mid-download is not an application error.
      writeBody(res, response.body, { idleTimeoutMs: response.idleTimeoutMs, ...options }).catch(() => undefined);
    }, next);
  };
}
