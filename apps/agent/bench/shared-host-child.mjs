// For footprint.bench.mjs's option (b) estimate: one node process holding what a shared host
// for the six built-in providers would hold at the least: the SDK and the six providers,
// loaded and created with the benchmark's configurations (the agent's own resolution and
// loader), then idle. No protocol is served: it is a lower bound, not an implementation.
// Run as `node shared-host-child.mjs <DSO home> <configs as JSON>`; writes <home>/shared-host.ready
// when created; runs until killed.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createProvider, loadProviderModule, resolveProviderModule } from '@dso/provider-sdk';

const [home, json] = process.argv.slice(2);
const from = join(import.meta.dirname, '..', 'src');
const providers = [];
for (const [name, { type, config }] of Object.entries(JSON.parse(json))) {
  const definition = await loadProviderModule(resolveProviderModule(`@dso/provider-${type}`, from));
  providers.push(await createProvider(definition, config, { name, env: process.env }));
}
writeFileSync(join(home, 'shared-host.ready'), `${providers.length}\n`);
setInterval(() => {}, 1_000);
