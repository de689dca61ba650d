// What the agent's tests share: a fake engine with containers, providers, and an agent whose
// log lines the test reads back.
import { Writable } from 'node:stream';
import { createLogger, createRedactor } from '@dso/core';
import type { ContainerDetails } from '@dso/docker-runtime';
import { createFakeRuntime } from '@dso/docker-runtime/testing';
import { ProviderError, type SecretProvider, SecretValue } from '@dso/provider-sdk';
import { type AgentOptions, createAgent } from '../agent.js';
export const CANARY = 'canary-agent-9b27e1';

export function container(id: string, labels: Record<string, string>): ContainerDetails {
  return {
    id,
    name: id,
    labels,
    running: true,
    state: 'running',
    startedAt: '2026-11-27T10:00:00.000000000Z',
    user: '',
    tmpfs: ['/run/secrets'],
    binds: [],
    volumes: [],
    image: 'x',
  };
}

export const MANAGED = {
  'dso.enable': 'true',
  'dso.file.db': 'dsofile://app/db',
  'dso.file.token': 'dsofile://app/cfg#token',
};

export function createProvider(values: Record<string, string>): SecretProvider {
  return {
    name: 'local',
    capabilities: { list: false, watch: false, probe: false, health: false },
    async resolve({ path }) {
      const value = values[path];
      if (value === undefined)
        throw new ProviderError('DSO_PROVIDER_NOT_FOUND', `no secret at ${path}`, { path });
      return { value: SecretValue.fromText(value), version: '1' };
    },
    async close() {},
  };
}

/** A provider whose values and version the test changes (`state.version`), counting calls. */
export function versioned(values: Record<string, string>) {
  const state = { version: 1, calls: 0 };
  const provider: SecretProvider = {
    ...createProvider(values),
    async resolve({ path }) {
      state.calls += 1;
      const value = values[path];
      if (value === undefined)
        throw new ProviderError('DSO_PROVIDER_NOT_FOUND', `no secret at ${path}`, { path });
      return { value: SecretValue.fromText(value), version: String(state.version) };
    },
  };
  return { provider, state };
}

export function setup(containers: ContainerDetails[], overrides: Partial<AgentOptions> = {}) {
  let output = '';
  const destination = new Writable({
    write(chunk, _encoding, callback) {
      output += String(chunk);
      callback();
    },
  });
  const redactor = createRedactor();
  const fake = createFakeRuntime({ containers });
  const agent = createAgent({
    runtime: fake.runtime,
    providers: new Map([
      [
        'local',
        createProvider({ 'app/db': CANARY, 'app/cfg': JSON.stringify({ token: `${CANARY}-t` }) }),
      ],
    ]),
    logger: createLogger({ level: 'trace', redactor, destination }),
    redactor,
    ...overrides,
  });
  return {
    agent,
    fake,
    redactor,
    lines: () =>
      output
        .split('\n')
        .filter(Boolean)
        .map((line) => JSON.parse(line) as Record<string, unknown>),
    output: () => output,
  };
}
