// A provider built against a future SDK API version (99), marked as a definition the way any
// copy of the SDK marks one.
import { z } from 'zod';

const definition = {
  type: 'future',
  sdkApiVersion: 99,
  description: 'built for a provider SDK API this host does not know',
  capabilities: { list: false, watch: false, probe: false, health: false },
  configSchema: z.unknown(),
  create() {
    throw new Error('never created');
  },
};
Object.defineProperty(definition, Symbol.for('dso.provider-definition'), { value: true });

export default definition;
