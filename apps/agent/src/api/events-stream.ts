import type { ServerResponse } from 'node:http';
import {
  AGENT_API_ROUTES,
  type AgentApiEvent,
  API_EVENTS_HEARTBEAT_MS,
  API_EVENTS_MAX_BUFFERED_BYTES,
  API_MAX_EVENT_STREAMS,
} from '@dso/core';
import type { Agent } from '../agent.js';
import { type Clean, sendJson } from './respond.js';

/** The open `GET /v1/events` streams of one API server. */
export interface EventStreams {
  /**
   * Answers `GET /v1/events`: one JSON line per agent event from now on (deliveries, failures
   * with their code and reference, rotations, replacements), a `heartbeat` line every
   * {@link API_EVENTS_HEARTBEAT_MS}, until the caller hangs up or the server closes. A caller
   * that reads too slowly (over {@link API_EVENTS_MAX_BUFFERED_BYTES} unread) gets a `dropped`
   * line and the end of the stream, never a growing buffer. No event holds a value. Past
   * {@link API_MAX_EVENT_STREAMS} open streams, a 503 `DSO_AGENT_API_BUSY`.
   */
  open(response: ServerResponse): void;
  /** Ends every open stream (they have no end of their own), so closing need not cut them. */
  endAll(): void;
}

/** The events streams of one API server, fed by `agent.subscribe`. */
export function createEventStreams(options: {
  agent: Pick<Agent, 'subscribe'>;
  clean: Clean;
}): EventStreams {
  const { agent, clean } = options;
  const streams = new Set<ServerResponse>();
  // Typed as the contract's event: an agent event the contract does not describe fails to compile.
  const line = (event: AgentApiEvent) => `${clean(JSON.stringify(event))}\n`;

  return {
    open(response) {
      if (streams.size >= API_MAX_EVENT_STREAMS) {
        // Each stream holds a connection: followers must not starve status, rotate or dso up.
        sendJson(
          response,
          503,
          {
            error: `${API_MAX_EVENT_STREAMS} event streams are open already: stop one (dso events) and try again`,
            code: 'DSO_AGENT_API_BUSY',
          },
          clean,
        );
        return;
      }
      response.writeHead(200, {
        'Content-Type': AGENT_API_ROUTES.events.contentType,
        'Cache-Control': 'no-store',
      });
      const stop = () => {
        unsubscribe();
        clearInterval(heartbeat);
        streams.delete(response);
      };
      const unsubscribe = agent.subscribe((event) => {
        if (response.writableLength > API_EVENTS_MAX_BUFFERED_BYTES) {
          stop();
          response.end(line({ type: 'dropped', at: Date.now(), reason: 'reader too slow' }));
          return;
        }
        response.write(line(event));
      });
      const heartbeat = setInterval(
        () => response.write(line({ type: 'heartbeat', at: Date.now() })),
        API_EVENTS_HEARTBEAT_MS,
      );
      heartbeat.unref();
      streams.add(response);
      response.once('close', stop);
      response.write(line({ type: 'subscribed', at: Date.now() }));
    },
    endAll() {
      for (const stream of streams) stream.end();
    },
  };
}
