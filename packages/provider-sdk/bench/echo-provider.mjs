// The provider the benchmark measures: answers every path with a fixed 64-byte value, at once.
// Plain JavaScript against the BUILT SDK, as a third-party provider package would be.
import { defineProvider, SecretValue } from '@dso/provider-sdk';
import { z } from 'zod';

export const VALUE_BYTES = 64;

export default defineProvider({
  type: 'bench-echo',
  description: 'a fixed 64-byte value for every path (benchmark)',
  configSchema: z.object({}),
  create: (_config, { name }) => {
    const bytes = Uint8Array.from({ length: VALUE_BYTES }, (_, index) => (index * 7) & 0xff);
    return {
      name,
      capabilities: { list: false, watch: false, probe: false, health: false },
      async resolve() {
        return { value: SecretValue.fromBytes(bytes), version: '1' };
      },
      async close() {},
    };
  },
});
