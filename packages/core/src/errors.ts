/**
 * The OCI error codes, registered once with their HTTP status and default message (as
 * distribution's errcode/register.go does). Handlers throw `new OciError(code, ...)`; the status
 * always comes from this table, never from the call site, except where the spec names another
 * status for the same code (416 for an out-of-order chunk, 413 for a too-large manifest, 405).
 */
export const ERROR_CODES = {
  BLOB_UNKNOWN: { status: 404, message: 'blob unknown to registry' },
  BLOB_UPLOAD_INVALID: { status: 400, message: 'blob upload invalid' },
  BLOB_UPLOAD_UNKNOWN: { status: 404, message: 'blob upload unknown to registry' },
  DIGEST_INVALID: { status: 400, message: 'provided digest did not match uploaded content' },
  MANIFEST_BLOB_UNKNOWN: { status: 400, message: 'manifest references a manifest or blob unknown to registry' },
  MANIFEST_INVALID: { status: 400, message: 'manifest invalid' },
  MANIFEST_UNKNOWN: { status: 404, message: 'manifest unknown to registry' },
  NAME_INVALID: { status: 400, message: 'invalid repository name' },
  NAME_UNKNOWN: { status: 404, message: 'repository name not known to registry' },
  SIZE_INVALID: { status: 400, message: 'provided length did not match content length' },
  UNAUTHORIZED: { status: 401, message: 'authentication required' },
  DENIED: { status: 403, message: 'requested access to the resource is denied' },
  UNSUPPORTED: { status: 400, message: 'the operation is unsupported' },
  TOOMANYREQUESTS: { status: 429, message: 'too many requests' },
  // Not in the spec's table; distribution's own codes for a backend that is down and for bugs.
  UNAVAILABLE: { status: 503, message: 'storage backend unavailable' },
  UNKNOWN: { status: 500, message: 'unknown error' },
} as const;

export type OciErrorCode = keyof typeof ERROR_CODES;

export interface OciErrorOptions {
  message?: string;
  detail?: unknown;
  /** Overrides the table's status where the spec asks for another one (413, 416, 405). */
  status?: number;
  /** Extra response headers (e.g. `WWW-Authenticate`, `Range` on a 416). */
  headers?: Record<string, string>;
}

/** A protocol error: rendered once, by `renderError`, as `{"errors":[{code,message,detail}]}`. */
export class OciError extends Error {
  readonly status: number;
  readonly detail: unknown;
  readonly headers: Record<string, string>;

  constructor(
    readonly code: OciErrorCode,
    options: OciErrorOptions = {},
  ) {
    super(options.message ?? ERROR_CODES[code].message);
    this.name = 'OciError';
    this.status = options.status ?? ERROR_CODES[code].status;
    this.detail = options.detail;
    this.headers = options.headers ?? {};
  }

  toJSON(): { code: string; message: string; detail?: unknown } {
    return this.detail === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, detail: this.detail };
  }
}

/** Several errors in one response (e.g. every missing blob of a manifest). */
export class OciErrors extends Error {
  constructor(readonly errors: OciError[]) {
    super(errors.map((e) => e.message).join('; '));
    this.name = 'OciErrors';
  }
}
