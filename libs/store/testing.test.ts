import { runMetricStoreContract } from './contract.js';
import { createMemoryStore } from './testing.js';

runMetricStoreContract('in-memory fake', async () => createMemoryStore());
