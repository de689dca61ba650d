import { defineProjectTests } from '../../vitest.shared.ts';

export default defineProjectTests(import.meta.dirname);
