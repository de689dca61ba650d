// A stand-in for the engine, for events.bench.mjs: answers ping and version (API 1.41) and
// streams `count` container events per /events request, each line as Docker 20.10 writes it,
// then keeps the stream open. Run by the benchmark as a child: `node fake-events-engine.mjs
// <socket> <count>`; it tells its parent when it listens. Not a test double of behaviour.
import { rmSync } from 'node:fs';
import { createServer } from 'node:http';

const [socketPath, countText] = process.argv.slice(2);
const count = Number(countText);
const ACTIONS = ['create', 'start', 'die', 'destroy'];
const T0 = 1_800_000_000_000_000_000n;

function line(index) {
  const id = index.toString(16).padStart(64, '0');
  const action = ACTIONS[index % ACTIONS.length];
  const timeNano = T0 + BigInt(index) * 1000n;
  return (
    `{"status":"${action}","id":"${id}","from":"dso-test/busybox:1","Type":"container",` +
    `"Action":"${action}","Actor":{"ID":"${id}","Attributes":{"dso.enable":"true",` +
    `"dso.file.db":"dsofile://app/db","image":"dso-test/busybox:1","name":"svc-${index}"}},` +
    `"scope":"local","time":${timeNano / 1_000_000_000n},"timeNano":${timeNano}}\n`
  );
}

// Built once: the benchmark measures the consumer, not this server.
const CHUNK_EVENTS = 500;
const chunks = [];
for (let start = 0; start < count; start += CHUNK_EVENTS) {
  let text = '';
  for (let index = start; index < Math.min(count, start + CHUNK_EVENTS); index += 1) {
    text += line(index);
  }
  chunks.push(Buffer.from(text));
}

const server = createServer((request, response) => {
  const url = request.url ?? '';
  if (url.endsWith('/_ping')) {
    response.end('OK');
    return;
  }
  if (url.endsWith('/version')) {
    response.setHeader('content-type', 'application/json');
    response.end(
      JSON.stringify({ Version: 'fake-20.10', ApiVersion: '1.41', MinAPIVersion: '1.12' }),
    );
    return;
  }
  if (url.includes('/events')) {
    response.setHeader('content-type', 'application/json');
    response.flushHeaders();
    let next = 0;
    const pump = () => {
      while (next < chunks.length) {
        if (!response.write(chunks[next++])) {
          response.once('drain', pump);
          return;
        }
      }
    };
    pump();
    return;
  }
  response.statusCode = 404;
  response.end('{"message":"not here"}');
});
rmSync(socketPath, { force: true });
server.listen(socketPath, () => process.send?.('listening'));
process.on('SIGTERM', () => {
  server.close();
  rmSync(socketPath, { force: true });
  process.exit(0);
});
