import { createDockerRuntime } from '../docker-runtime.js';
import { createContainerPool, docker, ensureTestImage } from '../test-support/engine.js';
import { runRuntimeConformance } from './runtime-conformance.js';

// The same suite as the fake's (fake-runtime.test.ts), against the real engine.
runRuntimeConformance('the real engine', async () => {
  await ensureTestImage();
  const pool = createContainerPool();
  const runtime = await createDockerRuntime();
  return {
    runtime,
    async run({ labels, tmpfs }) {
      const { id } = await pool.create({
        labels,
        tmpfs: Object.fromEntries(tmpfs.map((target) => [target, 'rw,size=1m'])),
      });
      return id;
    },
    async stop(id) {
      await docker.getContainer(id).stop({ t: 0 });
    },
    async remove(id) {
      await docker.getContainer(id).remove({ force: true });
    },
    async cleanup() {
      await pool.removeAll();
      await runtime.close();
    },
  };
});
