import { STATUS_CODES } from 'node:http';
import { createServer as createNetServer, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer, type TLSSocket } from 'node:tls';

/**
 * A small HTTP/1.1 server for the fake Vault. It exists because Node's `http` parser refuses
 * methods it does not know, and Vault's API has its own: `LIST`. It reads a request line,
 * headers, and a `Content-Length` or chunked body; answers with `Content-Length`; keeps
 * connections alive (one request at a time per connection, as undici sends them); and can
 * hold an answer back (slow responses). Tests only: bounded, but not hardened.
 */
export interface Http1Request {
  method: string;
  /** The decoded path, without the query. */
  path: string;
  /** The path as sent, still percent-encoded. */
  rawPath: string;
  query: URLSearchParams;
  /** Header names in lowercase. */
  headers: Map<string, string>;
  body: Buffer;
  /** The client certificate's subject CN, when the server asked for one and got one. */
  clientCertificateCn?: string;
}

export interface Http1Response {
  status: number;
  headers?: Record<string, string>;
  /** An object is sent as JSON. */
  body?: unknown;
}

export type Http1Handler = (request: Http1Request) => Promise<Http1Response> | Http1Response;

export interface Http1ServerOptions {
  handler: Http1Handler;
  /** Serve HTTPS with this key and certificate (PEM). */
  tls?: {
    key: string;
    cert: string;
    /** CA for client certificates; with it the server asks for one. */
    clientCa?: string;
    /** Fail the handshake of a client without a certificate signed by `clientCa`. */
    requireClientCertificate?: boolean;
  };
}

export interface Http1Server {
  port: number;
  close(): Promise<void>;
}

const MAX_HEAD_BYTES = 64 * 1024;
const MAX_BODY_BYTES = 64 * 1024 * 1024;

/** Starts the server on 127.0.0.1 and a free port. */
export async function startHttp1Server(options: Http1ServerOptions): Promise<Http1Server> {
  const sockets = new Set<Socket>();
  const onConnection = (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {
      // A client that resets its connection (an aborted request) is normal here.
    });
    serveConnection(socket, options.handler);
  };
  const server: Server =
    options.tls === undefined
      ? createNetServer(onConnection)
      : createTlsServer(
          {
            key: options.tls.key,
            cert: options.tls.cert,
            ...(options.tls.clientCa === undefined
              ? {}
              : {
                  ca: options.tls.clientCa,
                  requestCert: true,
                  rejectUnauthorized: options.tls.requireClientCertificate === true,
                }),
          },
          onConnection,
        );
  server.on('tlsClientError', () => {
    // A client that refuses our certificate (the untrusted-CA tests) ends its handshake here.
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no port');
  return {
    port: address.port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

function serveConnection(socket: Socket, handler: Http1Handler): void {
  let buffered = Buffer.alloc(0);
  let busy = false;
  const pump = async () => {
    if (busy) return;
    busy = true;
    try {
      for (;;) {
        const parsed = parseRequest(buffered);
        if (parsed === 'incomplete') return;
        if (parsed === 'invalid') {
          writeResponse(socket, { status: 400, body: { errors: ['malformed request'] } }, true);
          socket.end();
          return;
        }
        buffered = buffered.subarray(parsed.consumed);
        const request = parsed.request;
        const certificate = (socket as TLSSocket).getPeerCertificate?.();
        if (
          certificate &&
          (socket as TLSSocket).authorized &&
          typeof certificate.subject?.CN === 'string'
        ) {
          request.clientCertificateCn = certificate.subject.CN;
        }
        let response: Http1Response;
        try {
          response = await handler(request);
        } catch {
          response = { status: 500, body: { errors: ['internal error'] } };
        }
        if (socket.destroyed) return;
        const close = request.headers.get('connection')?.toLowerCase() === 'close';
        writeResponse(socket, response, close);
        if (close) {
          socket.end();
          return;
        }
      }
    } finally {
      busy = false;
    }
  };
  socket.on('data', (chunk: Buffer) => {
    buffered = Buffer.concat([buffered, chunk]);
    if (buffered.length > MAX_HEAD_BYTES + MAX_BODY_BYTES) {
      socket.destroy();
      return;
    }
    void pump().then(() => {
      // More bytes may have arrived while the handler ran.
      if (buffered.length > 0 && !busy) void pump();
    });
  });
}

type Parsed = { request: Http1Request; consumed: number } | 'incomplete' | 'invalid';

function parseRequest(buffer: Buffer): Parsed {
  const headEnd = buffer.indexOf('\r\n\r\n');
  if (headEnd === -1) return buffer.length > MAX_HEAD_BYTES ? 'invalid' : 'incomplete';
  const lines = buffer.subarray(0, headEnd).toString('latin1').split('\r\n');
  const match = /^([A-Z-]+) (\S+) HTTP\/1\.[01]$/.exec(lines[0] ?? '');
  if (match === null) return 'invalid';
  const headers = new Map<string, string>();
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    if (colon <= 0) return 'invalid';
    headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
  }
  let offset = headEnd + 4;
  let body: Buffer;
  if (headers.get('transfer-encoding')?.toLowerCase() === 'chunked') {
    const chunks: Buffer[] = [];
    for (;;) {
      const lineEnd = buffer.indexOf('\r\n', offset);
      if (lineEnd === -1) return 'incomplete';
      const size = Number.parseInt(buffer.subarray(offset, lineEnd).toString('latin1'), 16);
      if (!Number.isInteger(size) || size < 0 || size > MAX_BODY_BYTES) return 'invalid';
      offset = lineEnd + 2;
      if (size === 0) {
        const trailerEnd = buffer.indexOf('\r\n', offset);
        if (trailerEnd === -1) return 'incomplete';
        offset = trailerEnd + 2;
        break;
      }
      if (buffer.length < offset + size + 2) return 'incomplete';
      chunks.push(buffer.subarray(offset, offset + size));
      offset += size + 2;
    }
    body = Buffer.concat(chunks);
  } else {
    const length = Number(headers.get('content-length') ?? '0');
    if (!Number.isInteger(length) || length < 0 || length > MAX_BODY_BYTES) return 'invalid';
    if (buffer.length < offset + length) return 'incomplete';
    body = Buffer.from(buffer.subarray(offset, offset + length));
    offset += length;
  }
  const target = match[2] as string;
  const queryAt = target.indexOf('?');
  const rawPath = queryAt === -1 ? target : target.slice(0, queryAt);
  let path: string;
  try {
    path = decodeURIComponent(rawPath);
  } catch {
    return 'invalid';
  }
  return {
    request: {
      method: match[1] as string,
      path,
      rawPath,
      query: new URLSearchParams(queryAt === -1 ? '' : target.slice(queryAt + 1)),
      headers,
      body,
    },
    consumed: offset,
  };
}

function writeResponse(socket: Socket, response: Http1Response, close: boolean): void {
  // 204 and 304 carry neither a body nor a Content-Length.
  const bodiless = response.status === 204 || response.status === 304;
  const body =
    bodiless || response.body === undefined
      ? Buffer.alloc(0)
      : Buffer.isBuffer(response.body)
        ? response.body
        : Buffer.from(JSON.stringify(response.body), 'utf8');
  const headers: Record<string, string> = {
    'Cache-Control': 'no-store',
    ...(bodiless || response.body === undefined || Buffer.isBuffer(response.body)
      ? {}
      : { 'Content-Type': 'application/json' }),
    ...response.headers,
    ...(bodiless ? {} : { 'Content-Length': String(body.length) }),
    Date: new Date().toUTCString(),
  };
  if (close) headers.Connection = 'close';
  const head =
    `HTTP/1.1 ${response.status} ${STATUS_CODES[response.status] ?? 'Unknown'}\r\n` +
    Object.entries(headers)
      .map(([name, value]) => `${name}: ${value}\r\n`)
      .join('') +
    '\r\n';
  socket.write(Buffer.concat([Buffer.from(head, 'latin1'), body]));
}
