import { basicAuth, type BasicPrincipal } from '@berthjs/auth';
import { describeSpec } from './support/spec-suite.js';
import { embeddedStores } from './support/stores.js';

// The whole spec suite with auth on: anonymous callers are refused, the suite's credentials pass.
describeSpec(
  'koa + fs + sqlite, Basic auth',
  'koa',
  embeddedStores,
  {
    ...basicAuth({ verifyPassword: (user, pass) => user === 'spec' && pass === 's3cret:with colon' }),
    authorize: ({ principal }) => (principal as BasicPrincipal).username === 'spec',
    anonymous: 'none',
  },
  { Authorization: `Basic ${Buffer.from('spec:s3cret:with colon').toString('base64')}` },
);
