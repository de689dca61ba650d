import { defineMemoryProvider } from './memory-provider.js';

/**
 * The example store with no optional capability: resolve only. The suite must then register
 * no list, watch, probe or health test, and prove those methods absent.
 */
export const basicMemoryProvider = defineMemoryProvider({ type: 'memory-basic', capabilities: {} });

export default basicMemoryProvider;
