import { runProviderConformance } from '@dso/provider-conformance';
import { environmentFixture } from './test-support/conformance-fixture.js';
import envProvider from './index.js';

runProviderConformance({
  name: 'env',
  definition: envProvider,
  module: new URL('./index.ts', import.meta.url).pathname,
  fixture: environmentFixture,
});
