export { basicAuth, basicChallenge, readBasic, type BasicAuthOptions, type BasicPrincipal } from './basic.js';
export { Htpasswd, htpasswdLine, loadHtpasswd, type HtpasswdOptions } from './htpasswd.js';
export { resolveKey, type ResolvedKey, type TokenKey } from './keys.js';
export { grants, parseScopes, type RequestedScope, type TokenAccess } from './scope.js';
export { createTokenEndpoint, type TokenEndpointOptions } from './token-endpoint.js';
export { TokenPrincipal, tokenAuth, type TokenAuthOptions } from './token-auth.js';
