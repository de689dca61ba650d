// For events.bench.mjs: creates and removes `count` labelled containers on the real engine,
// one after another, so the benchmark's own process only consumes events. Starts on a 'go'
// message from its parent, and disconnects when done. Run as a child:
// `node container-churn.mjs <socket> <image> <label-key> <label-value> <count>`.
import { createRequire } from 'node:module';

const Docker = createRequire(import.meta.resolve('@dso/docker-runtime'))('dockerode');
const [socketPath, image, labelKey, labelValue, countText] = process.argv.slice(2);
const docker = new Docker({ socketPath });
// Start when the benchmark says so: it subscribes and starts its CPU clock first.
await new Promise((resolve) => process.once('message', resolve));
for (let i = 0; i < Number(countText); i += 1) {
  const container = await docker.createContainer({
    Image: image,
    Cmd: ['true'],
    Labels: { [labelKey]: labelValue },
    HostConfig: { NetworkMode: 'none' },
  });
  await container.remove({ force: true });
}
process.disconnect?.();
