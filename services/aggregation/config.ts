import type { Config } from '../../libs/runtime/config.js';

/** Query limits (the `query.*` configuration keys). */
export type QueryLimits = Config['query'];
