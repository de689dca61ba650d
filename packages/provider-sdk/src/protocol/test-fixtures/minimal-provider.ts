// Only resolve: no health, so the half-open probe is the next real call. Exported as `provider`.
import { defineProvider } from '../../define-provider.js';
import { createFixtureProvider, fixtureConfigSchema } from './fixture-provider.js';

export const provider = defineProvider({
  type: 'fixture-minimal',
  description: 'the protocol tests fixture, resolve only',
  configSchema: fixtureConfigSchema,
  create: (config, context) => createFixtureProvider(config, context, false),
});
