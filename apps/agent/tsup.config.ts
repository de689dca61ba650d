import { definePackageBuild } from '../../tools/config/tsup.base.ts';

export default definePackageBuild({ entry: ['src/index.ts', 'src/main.ts', 'src/startup.ts'] });
