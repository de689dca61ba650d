import { describe, expect, it } from 'vitest';
import { detectEngineDialect } from './engine-dialect.js';

describe('detectEngineDialect', () => {
  it('reads Docker from a /version without a Podman component', () => {
    expect(
      detectEngineDialect({
        Version: '20.10.24+dfsg1',
        Components: [{ Name: 'Engine', Version: '20.10.24+dfsg1' }, { Name: 'containerd' }],
      }),
    ).toMatchObject({ kind: 'docker', display: 'Docker 20.10.24+dfsg1' });
  });

  it("reads Podman from its compatible service's component list", () => {
    expect(
      detectEngineDialect({
        Version: '4.3.1',
        Components: [
          { Name: 'Podman Engine', Version: '4.3.1' },
          { Name: 'Conmon', Version: 'conmon version 2.1.6' },
        ],
      }),
    ).toMatchObject({ kind: 'podman', display: 'Podman 4.3.1' });
  });

  it('takes an engine that lists no components for Docker', () => {
    expect(detectEngineDialect({ Version: '20.10.5', Components: null }).kind).toBe('docker');
    expect(detectEngineDialect({}).display).toBe('Docker unknown');
  });
});
