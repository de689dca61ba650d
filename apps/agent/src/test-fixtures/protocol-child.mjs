// A provider child written from PROTOCOL.md, with no SDK: what a provider in another language
// is to the agent. Serves `config.secrets` (texts); the path `env` answers the names of its
// environment, `hang` never answers, `crash` exits. Logs a line on stderr at start.
import { createInterface } from 'node:readline';

const send = (message) =>
  process.stdout.write(`${JSON.stringify({ jsonrpc: '2.0', ...message })}\n`);
const fail = (id, code, message) =>
  send({ id, error: { code: -32000, message, data: { code, retryable: false } } });
let secrets = {};
process.stderr.write('protocol child started\n');

for await (const line of createInterface({ input: process.stdin })) {
  const { id, method, params = {} } = JSON.parse(line);
  if (method === 'initialize') {
    secrets = params.config?.secrets ?? {};
    send({
      id,
      result: {
        protocolVersion: 1,
        sdkApiVersion: 1,
        type: 'protocol-child',
        capabilities: { list: false, watch: false, probe: false, health: false },
        maxMessageBytes: 1_048_576,
      },
    });
  } else if (method === 'resolve') {
    const { path } = params;
    if (path === 'hang') continue;
    if (path === 'crash') process.exit(3);
    const text = path === 'env' ? Object.keys(process.env).sort().join(',') : secrets[path];
    if (text === undefined) fail(id, 'DSO_PROVIDER_NOT_FOUND', `no secret at ${path}`);
    else
      send({
        id,
        result: { value: { base64: Buffer.from(text).toString('base64') }, version: '1' },
      });
  } else if (method === 'shutdown') {
    send({ id, result: null });
    process.exit(0);
  } else if (id !== undefined) {
    send({
      id,
      error: {
        code: -32601,
        message: `method ${method} not found`,
        data: { code: 'DSO_PROVIDER_INTERNAL', retryable: false },
      },
    });
  }
}
