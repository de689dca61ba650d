import type { ContainerDetails } from '../docker-runtime.js';
import { createFakeRuntime } from './fake-runtime.js';
import { runRuntimeConformance } from './runtime-conformance.js';

runRuntimeConformance('createFakeRuntime', async () => {
  const fake = createFakeRuntime();
  let next = 0;
  return {
    runtime: fake.runtime,
    async run({ labels, tmpfs }) {
      next += 1;
      const id = next.toString(16).padStart(64, 'a');
      const container: ContainerDetails = {
        id,
        name: `fake-${next}`,
        labels,
        running: true,
        state: 'running',
        user: '',
        startedAt: new Date().toISOString(),
        tmpfs,
        binds: [],
        volumes: [],
        image: 'fake',
      };
      fake.start(container);
      return id;
    },
    async stop(id) {
      fake.stop(id);
    },
    async remove(id) {
      fake.remove(id);
    },
    async cleanup() {
      await fake.runtime.close();
    },
  };
});
