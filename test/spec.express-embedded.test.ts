import { describeRestart, describeSpec } from './support/spec-suite.js';
import { embeddedStores } from './support/stores.js';

describeSpec('express + fs + sqlite', 'express', embeddedStores);
describeRestart('express + fs + sqlite', 'express', embeddedStores);
