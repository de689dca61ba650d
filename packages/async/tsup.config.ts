import { definePackageBuild } from '../../tools/config/tsup.base.ts';

export default definePackageBuild();
