// A provider child written by hand against PROTOCOL.md (no SDK), which misbehaves on request:
// the path it is asked to resolve, or its first argument for the handshake, says how.
//   node rogue-child.mjs [normal|hang-initialize|exit-initialize|garbage-initialize|protocol-2]
//   node rogue-child.mjs flaky <file>   exits at initialize while <file> exists
import { existsSync } from 'node:fs';
import { createInterface } from 'node:readline';

const mode = process.argv[2] ?? 'normal';
const write = (message) => process.stdout.write(`${JSON.stringify(message)}\n`);
const answer = (id, result) => write({ jsonrpc: '2.0', id, result });

const lines = createInterface({ input: process.stdin, crlfDelay: Number.POSITIVE_INFINITY });
lines.on('line', (line) => {
  const message = JSON.parse(line);
  const { id, method, params } = message;
  if (method === 'initialize') {
    if (mode === 'hang-initialize') return;
    if (mode === 'exit-initialize') process.exit(4);
    if (mode === 'flaky' && existsSync(process.argv[3])) process.exit(5);
    if (mode === 'garbage-initialize') {
      process.stdout.write('Welcome to my provider!\n');
      return;
    }
    answer(id, {
      protocolVersion: mode === 'protocol-2' ? 2 : 1,
      sdkApiVersion: 1,
      type: 'rogue',
      capabilities: { list: false, watch: false, probe: false, health: false },
      maxMessageBytes: 1048576,
    });
    return;
  }
  if (method === 'shutdown') {
    answer(id, null);
    process.exit(0);
  }
  if (method !== 'resolve') return;
  const ok = (text) =>
    answer(id, { value: { base64: Buffer.from(text).toString('base64') }, version: '1' });
  switch (params.path) {
    case 'not-json':
      process.stdout.write('this is not json\n');
      return;
    case 'not-rpc':
      process.stdout.write('{"hello":"world"}\n');
      return;
    case 'unknown-id':
      answer(987654, { value: { base64: '' }, version: '1' });
      return;
    case 'bad-result':
      answer(id, { value: 'not base64 in an object', version: 1 });
      return;
    case 'oversized': {
      // 10 MiB of value, far over the host's 1 MiB line limit, sent anyway.
      process.stdout.write(`{"jsonrpc":"2.0","id":${id},"result":{"value":{"base64":"`);
      const chunk = 'A'.repeat(1024 * 1024);
      for (let i = 0; i < 14; i++) process.stdout.write(chunk);
      process.stdout.write('"},"version":"1"}}\n');
      return;
    }
    case 'partial-eof':
      process.stdout.write(`{"jsonrpc":"2.0","id":${id},"res`);
      process.exit(0);
      return;
    case 'crash':
      process.exit(1);
      return;
    case 'hang':
      return;
    default:
      ok(`rogue-${params.path}`);
  }
});
lines.on('close', () => process.exit(0));
