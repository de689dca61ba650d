// Every capability declared: list, watch, probe, health.
import { defineProvider } from '../../define-provider.js';
import { createFixtureProvider, fixtureConfigSchema } from './fixture-provider.js';

export default defineProvider({
  type: 'fixture',
  description: 'the protocol tests fixture, every capability',
  capabilities: { list: true, watch: true, probe: true, health: true },
  configSchema: fixtureConfigSchema,
  create: (config, context) => createFixtureProvider(config, context, true),
});
