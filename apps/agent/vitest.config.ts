import { mergeConfig } from 'vitest/config';
import { defineProjectTests } from '../../vitest.shared.ts';

export default mergeConfig(defineProjectTests(import.meta.dirname, 'test'), {
  // The provider-loading tests install plugin packages under .test-plugins-*/node_modules;
  // transform them like source so their imports of workspace packages resolve to src/.
  test: { server: { deps: { inline: [/\.test-plugins-/] } } },
});
