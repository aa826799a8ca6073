/**
 * Fixture for nats-server.test.ts: starts a test nats-server, prints its URL as one JSON
 * line, then idles until killed. The test SIGKILLs this process and checks the server
 * goes away with it (nothing here can clean up after a SIGKILL: that is the point).
 */
import { startTestNats } from '../testing.js';

const nats = await startTestNats();
process.stdout.write(`${JSON.stringify({ url: nats.url, port: nats.port, storeDir: nats.storeDir })}\n`);
setInterval(() => {}, 60_000);
