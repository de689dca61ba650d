// For memory.bench.mjs: a baseline process that holds what any Docker-watching daemon in Node
// holds, dockerode (the copy @dso/docker-runtime ships with) and one open events stream, and
// nothing else. Run as `node dockerode-events.mjs <socket>`; runs until killed.
import { createRequire } from 'node:module';

const Docker = createRequire(import.meta.resolve('@dso/docker-runtime'))('dockerode');
const docker = new Docker({ socketPath: process.argv[2] });
const stream = await docker.getEvents({ filters: { type: ['container'] } });
stream.on('data', () => {
  // Drained and dropped: the baseline is the open stream, not work on its events.
});
setInterval(() => {}, 1_000);
