export { createLogger, serve, type RunningServer } from './serve.js';
export { ConfigError, parseServeConfig, serveHelp, type ServeConfig } from './config.js';
export { VERSION } from './version.js';
