import { describeRestart, describeSpec } from './support/spec-suite.js';
import { embeddedStores } from './support/stores.js';

describeSpec('koa + fs + sqlite', 'koa', embeddedStores);
describeRestart('koa + fs + sqlite', 'koa', embeddedStores);
