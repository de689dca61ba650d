#!/usr/bin/env node
// bench: needs-engine
// Benchmark: memory bounded by what is live (issue 13, point 4): a 700 KB secret rotated through
// versions, and one 10 MiB secret, against the previous revision's redactor and a same-run
// baseline.
//
// Part 1, the redactor alone (what kept every value): for this revision's BUILT @dso/core and
// the previous revision's redactor (BENCH_PREVIOUS_REV, default the commit before leases:
// packages/core/src/redaction*.ts from git, bundled with esbuild into node_modules/.cache), each
// scenario in a fresh `node --expose-gc` process (secret-memory-child.mjs): `baseline` (nothing
// registered), `rotate-700k` (versions 0..12 of a 700 KB value, each released once the next is
// registered where the redactor has leases; measured after version 2 and after version 12) and
// `large-10m` (one 10 MiB value). Live = heapUsed + external + arrayBuffers after three full
// collections. The previous revision's `large-10m` takes minutes and gigabytes: only with
// BENCH_PREVIOUS_LARGE=1.
//
// Part 2, the real process: the BUILT agent binary against a private engine of its own (dockerd
// on a socket under /tmp, no bridge, the test image loaded into it), so no other agent's
// containers count: one container consumes the secret. (a) 700 KB, 2 rotations to warm up, RSS,
// 10 rotations (each waited for in the container's file), RSS; (b) 10 MiB with
// providers.local.maxMessageBytes 16MiB: RSS at idle, delivered, peak (VmHWM). Beside each, a
// bare `node -e 'setInterval(() => {}, 1000)'` started at the same moment (its RSS).
//
// Run through `npm run bench -- secret-memory` (builds first) or, after
// `npx nx run-many -t build -p @dso/agent,@dso/cli`, `node apps/agent/bench/secret-memory.bench.mjs`.
// Needs root (dockerd). A report, not a test: exits 0 whatever the figures.
import { execFileSync, spawn } from 'node:child_process';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openVault, resolveVaultKey } from '@dso/provider-local';
import { SecretValue } from '@dso/provider-sdk';
import {
  bundlePreviousRedactor,
  loadAverage,
  log,
  machine,
  printBenchJson,
  printMachine,
  printTable,
  round2,
} from '../../../tools/bench-lib.mjs';
import {
  createBenchHome,
  Docker,
  handleInterrupts,
  pause,
  ROOT,
  startAgentProcess,
  startNode,
  testImage,
} from './agent-process.mjs';

const PREVIOUS_REV = process.env.BENCH_PREVIOUS_REV ?? '8ddbcac0c59766c4371865e4fc9d48dab9b53f69';
const CHILD = join(import.meta.dirname, 'secret-memory-child.mjs');
const MB = (bytes) => (bytes === undefined ? 'n/a' : String(round2(bytes / 1e6)));

// ---- Part 1: the redactor --------------------------------------------------------------------

/** The previous revision's redactor as one ES module, bundled from git: its path. */
const previousRedactor = () => bundlePreviousRedactor(PREVIOUS_REV);

/** One scenario in a fresh process; its JSON line. */
function measureRedactor(modulePath, scenario) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--expose-gc', CHILD, modulePath, scenario], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (text) => {
      out += text;
    });
    child.on('error', reject);
    child.on('exit', (code) =>
      code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`${scenario} exited ${code}`)),
    );
  });
}

// ---- Part 2: the real agent on a private engine ----------------------------------------------

/** dockerd of the benchmark's own (as packages/docker-runtime's test-support/private-engine.ts). */
async function startPrivateEngine() {
  const dir = `/tmp/dso-bench-engine-${randomUUID().slice(0, 8)}`;
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const socketPath = join(dir, 'docker.sock');
  const child = spawn(
    'dockerd',
    [
      `--data-root=${join(dir, 'data')}`,
      `--exec-root=${join(dir, 'exec')}`,
      `--pidfile=${join(dir, 'dockerd.pid')}`,
      `--host=unix://${socketPath}`,
      '--bridge=none',
      '--iptables=false',
      '--ip-masq=false',
      '--ip-forward=false',
    ],
    { stdio: 'ignore' },
  );
  const docker = new Docker({ socketPath });
  const destroy = async () => {
    try {
      for (const info of await docker.listContainers({ all: true })) {
        await docker.getContainer(info.Id).remove({ force: true, v: true });
      }
    } catch {
      // The engine is already gone: the unmounts below still clean up.
    }
    if (child.exitCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    }
    const mounts = readFileSync('/proc/self/mounts', 'utf8')
      .split('\n')
      .map((line) => line.split(' ')[1] ?? '')
      .filter((path) => path.startsWith(`${dir}/`))
      .sort((a, b) => b.length - a.length);
    for (const path of mounts) {
      try {
        execFileSync('umount', ['-l', path]);
      } catch {
        // Already unmounted with its parent.
      }
    }
    rmSync(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 200 });
  };
  try {
    for (let tries = 0; ; tries++) {
      if (child.exitCode !== null) throw new Error(`dockerd exited with ${child.exitCode}`);
      try {
        await docker.ping();
        break;
      } catch {
        if (tries > 300) throw new Error('the private engine did not answer in 30 s');
        await pause(100);
      }
    }
    // The test image, copied from the shared engine (no registry is reachable here).
    const image = await new Docker().getImage(testImage.image).get();
    await new Promise((resolve, reject) =>
      docker.loadImage(image, {}, (error, output) => {
        if (error) return reject(error);
        output.resume();
        output.on('end', resolve);
        output.on('error', reject);
      }),
    );
    return { host: `unix://${socketPath}`, docker, destroy };
  } catch (error) {
    await destroy();
    throw error;
  }
}

/** The container's file, read through /proc/<pid>/root; its sha256, or undefined. */
async function fileDigest(docker, id, path) {
  const { State } = await docker.getContainer(id).inspect();
  try {
    return createHash('sha256')
      .update(readFileSync(`/proc/${State.Pid}/root${path}`))
      .digest('hex');
  } catch {
    return undefined;
  }
}

async function waitForFile(docker, id, path, value, timeoutMs = 120_000) {
  const want = createHash('sha256').update(value).digest('hex');
  const deadline = Date.now() + timeoutMs;
  while ((await fileDigest(docker, id, path)) !== want) {
    if (Date.now() > deadline) throw new Error(`no new ${path} in ${timeoutMs} ms`);
    await pause(100);
  }
}

/** VmRSS and VmHWM of `pid`, in bytes. */
function memoryOf(pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name) => Number(new RegExp(`^${name}:\\s+(\\d+) kB$`, 'm').exec(status)[1]) * 1024;
  return { rss: field('VmRSS'), peak: field('VmHWM') };
}

async function storeVersion(home, path, value) {
  const key = await resolveVaultKey({ env: { DSO_VAULT_KEY_FILE: join(home, 'vault.key') } });
  const vault = await openVault({
    path: join(home, 'vault.dso'),
    key,
    maxSecretBytes: 16 * 2 ** 20,
  });
  const secret = SecretValue.fromBytes(value);
  try {
    await vault.set(path, secret);
  } finally {
    secret.dispose();
    await vault.close();
  }
}

const CONSUMER = {
  Labels: {
    'dso.enable': 'true',
    'dso.file.big': 'dsofile://app/big',
    [testImage.label]: `bench-${randomUUID()}`,
  },
  HostConfig: { NetworkMode: 'none', Tmpfs: { '/run/secrets': 'size=64m' } },
};

/** One agent run in a home of its own against `engine`: `scenario(agent, container)`. */
async function withAgent(engine, secrets, configYaml, scenario) {
  const home = await createBenchHome({});
  // Stored here rather than by createBenchHome: its vault keeps to the default 1 MiB.
  for (const [path, bytes] of Object.entries(secrets)) await storeVersion(home.home, path, bytes);
  writeFileSync(join(home.home, 'dso.yaml'), configYaml(home.home), { mode: 0o600 });
  const agent = startAgentProcess({ ...home.env, DOCKER_HOST: engine.host });
  const bare = startNode(['-e', 'setInterval(() => {}, 1000)']);
  let container;
  try {
    await agent.waitForLog('agent ready');
    const idle = memoryOf(agent.pid);
    container = await engine.docker.createContainer({
      Image: testImage.image,
      Cmd: ['sleep', '600'],
      ...CONSUMER,
    });
    await container.start();
    return await scenario({ agent, home: home.home, id: container.id, idle, bare });
  } finally {
    await container?.remove({ force: true, v: true }).catch(() => undefined);
    await agent.stop();
    await bare.stop();
    home.remove();
  }
}

const value = (bytes) => Buffer.from(randomBytes(bytes).toString('base64').slice(0, bytes));

async function rotation700k(engine) {
  let current = value(700 * 1024);
  return withAgent(
    engine,
    { 'app/big': current },
    () => 'reconcile: { intervalMs: 1h }\nrotation: { pollIntervalMs: 1s, jitterMs: 0 }\n',
    async ({ agent, home, id }) => {
      await waitForFile(engine.docker, id, '/run/secrets/big', current);
      const rotate = async () => {
        current = value(700 * 1024);
        await storeVersion(home, 'app/big', current);
        await waitForFile(engine.docker, id, '/run/secrets/big', current);
      };
      for (let n = 0; n < 2; n++) await rotate();
      const before = memoryOf(agent.pid);
      for (let n = 0; n < 10; n++) await rotate();
      await pause(2_000);
      return { before, after: memoryOf(agent.pid) };
    },
  );
}

async function large10m(engine) {
  const secret = value(10 * 2 ** 20);
  return withAgent(
    engine,
    { 'app/big': secret },
    (home) =>
      `providers:\n  local:\n    type: local\n    maxMessageBytes: 16MiB\n    config: { vaultPath: ${JSON.stringify(join(home, 'vault.dso'))} }\n`,
    async ({ agent, id, idle, bare }) => {
      await waitForFile(engine.docker, id, '/run/secrets/big', secret);
      const delivered = memoryOf(agent.pid);
      return { idle, delivered, bare: memoryOf(bare.pid) };
    },
  );
}

// ---- Main ------------------------------------------------------------------------------------

handleInterrupts('remove /tmp/dso-bench-engine-* (umount -l what is mounted under it first)');
const host = await machine();
host.loadAtStart = loadAverage();

log(`previous revision's redactor: ${PREVIOUS_REV.slice(0, 12)}`);
const previous = await previousRedactor();
const current = join(ROOT, 'packages/core/dist/index.js');
const redactorRows = [];
for (const [revision, modulePath] of [
  [`previous (${PREVIOUS_REV.slice(0, 7)})`, previous],
  ['this revision', current],
]) {
  for (const scenario of ['baseline', 'rotate-700k', 'large-10m']) {
    if (scenario === 'large-10m' && modulePath === previous && !process.env.BENCH_PREVIOUS_LARGE) {
      redactorRows.push({ revision, scenario, skipped: true });
      continue;
    }
    log(`redactor: ${revision}, ${scenario}`);
    redactorRows.push({ revision, ...(await measureRedactor(modulePath, scenario)) });
  }
}

log('starting a private engine');
const engine = await startPrivateEngine();
let rotation;
let large;
try {
  log('agent: 700 KB secret, 12 versions');
  rotation = await rotation700k(engine);
  log('agent: 10 MiB secret');
  large = await large10m(engine);
} finally {
  await engine.destroy();
}
host.loadAtEnd = loadAverage();

printMachine(host, [
  `revision ${host.revision}, node ${host.node}, kernel ${host.kernel}`,
  `previous revision's redactor: ${PREVIOUS_REV.slice(0, 12)} (the commit before leases)`,
]);
console.log('\nThe redactor alone (live = heap + external after full collections):\n');
printTable(
  [
    'redactor',
    'scenario',
    'live before (MB)',
    'live after (MB)',
    'RSS after (MB)',
    'peak RSS (MB)',
    'register (ms)',
  ],
  redactorRows.map((row) =>
    row.skipped
      ? [row.revision, row.scenario, 'skipped', '', '', '', '']
      : [
          row.revision,
          row.scenario,
          MB(row.before.live),
          MB(row.after.live),
          MB(row.after.rss),
          MB(row.after.peak),
          row.registerMsPerVersion !== undefined
            ? `${round2(row.registerMsPerVersion)} /version`
            : row.registerMs !== undefined
              ? String(round2(row.registerMs))
              : '',
        ],
  ),
);
console.log('\nThe built agent on a private engine, one consuming container (RSS from /proc):\n');
printTable(
  ['case', 'before (MB)', 'after (MB)', 'difference (MB)', 'peak RSS (MB)'],
  [
    [
      '700 KB secret, RSS after 2 vs after 12 versions',
      MB(rotation.before.rss),
      MB(rotation.after.rss),
      MB(rotation.after.rss - rotation.before.rss),
      MB(rotation.after.peak),
    ],
    [
      '10 MiB secret, RSS idle vs delivered; peak above idle',
      MB(large.idle.rss),
      MB(large.delivered.rss),
      MB(large.delivered.peak - large.idle.rss),
      MB(large.delivered.peak),
    ],
    ['bare node (same run), RSS', '', MB(large.bare.rss), '', ''],
  ],
);
console.log(
  '\nprevious revision, as issue 13 measured the agent: 700 KB through versions 1-6, 228 -> 918 MB ' +
    '(914 MB after idling); 10 MiB: 1.5-1.75 GB steady, 2.4 GB peak',
);
printBenchJson({
  bench: 'agent-secret-memory',
  host,
  redactor: redactorRows,
  agent: { rotation, large },
});
