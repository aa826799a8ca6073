#!/usr/bin/env node
// The `telemesh` executable. The sources are TypeScript; tsx compiles them on load (and
// caches the result), so a clone runs without a build step.
import { register } from 'tsx/esm/api';

register();
await import('./main.ts');
