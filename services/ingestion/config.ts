import type { Config } from '../../libs/runtime/config.js';

/** The limits ingestion applies to every write (the `ingestion.*` configuration keys). */
export type IngestLimits = Config['ingestion'];
