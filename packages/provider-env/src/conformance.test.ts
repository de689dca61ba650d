import { runProviderConformance } from '@dso/provider-conformance';
import envProvider from './index.js';
import { environmentFixture } from './test-support/conformance-fixture.js';

runProviderConformance({
  name: 'env',
  definition: envProvider,
  module: new URL('./index.ts', import.meta.url).pathname,
  fixture: environmentFixture,
});
