export { serve, type RunningServer } from './serve.js';
export { parseServeConfig, serveHelp, type ServeConfig } from './config.js';
