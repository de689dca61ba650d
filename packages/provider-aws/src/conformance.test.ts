import { type ConformanceFixture, runProviderConformance } from '@dso/provider-conformance';
import { awsProvider } from './index.js';
import { createAwsFixture } from './test-support/aws-fixture.js';

// AWS Secrets Manager cannot be reached from these machines: the suite runs the provider, with
// the real AWS SDK v3, against the fake of the service's JSON API on 127.0.0.1.
runProviderConformance({
  name: 'aws',
  definition: awsProvider,
  module: new URL('./index.ts', import.meta.url).pathname,
  fixture: async (): Promise<ConformanceFixture> => {
    const fixture = await createAwsFixture();
    return {
      config: fixture.config,
      env: fixture.env,
      put: fixture.put,
      // A superseded version loses its stages but stays readable by VersionId.
      history: true,
      // Each starts a child across the process boundary, in parallel: a few suffice here, and
      // config.test.ts covers every rule of the schema.
      invalidConfigs: [
        { regoin: 'us-east-1' },
        { endpoint: 'http://secretsmanager.example.com' },
        { region: 'moon-base-1a', maxAttempts: 0 },
      ],
      faults: fixture.faults,
      close: fixture.close,
    };
  },
});
