import { fileURLToPath } from 'node:url';
import { basicMemoryProvider } from './examples/basic-memory-provider.js';
import { createMemoryFixture } from './examples/memory-fixture.js';
import { runProviderConformance } from './index.js';

// The whole suite, both halves, against the example with no optional capability, a store
// without history and no faults: no list, watch, probe or health test may be registered, and
// those methods must be absent from the live provider on both sides of the process boundary.
runProviderConformance({
  name: 'memory-basic (no optional capability)',
  definition: basicMemoryProvider,
  module: fileURLToPath(new URL('./examples/basic-memory-provider.ts', import.meta.url)),
  fixture: () => createMemoryFixture({ history: false, faults: false }),
});
