import { describeRestart, describeSpec } from './support/spec-suite.js';
import { postgresStores } from './support/stores.js';

// Postgres is part of the suite everywhere (CI provides it); there is no silent skip.
describeSpec('koa + fs + postgres', 'koa', postgresStores);
describeRestart('koa + fs + postgres', 'koa', postgresStores);
