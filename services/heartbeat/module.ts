/**
 * Lifecycle of the heartbeat service: open the agent registry (KV), start the failure
 * detector, register HeartbeatService (and its agent stream on the native gRPC path); on stop, end agent streams so agents move to
 * another replica, and stop the detector.
 */
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { agentsSubject, BUCKETS, samplesSubject, type Bus } from '../../libs/bus/index.js';
import { HeartbeatService } from '../../libs/contracts/telemesh/heartbeat/v1/heartbeat_service_pb.js';
import type { Config } from '../../libs/runtime/config.js';
import type { HealthRegistry } from '../../libs/runtime/health.js';
import type { Started } from '../../libs/runtime/modules.js';
import type { RpcServer } from '../../libs/runtime/server.js';
import { serveContract } from '../../libs/runtime/service-module.js';
import { defaultReplicaName, HeartbeatServiceImpl } from './heartbeat-service.js';
import { AgentRegistry } from './registry.js';

/** What the heartbeat module is wired with. */
export interface HeartbeatModuleDeps {
  readonly config: Config;
  readonly server: RpcServer;
  readonly bus: Bus;
  readonly registry: Registry;
  readonly health: HealthRegistry;
  readonly logger: Logger;
}

/** Starts the heartbeat service; its value is the implementation (tests drive it). */
export async function startHeartbeat(deps: HeartbeatModuleDeps): Promise<Started<HeartbeatServiceImpl>> {
  const logger = deps.logger.child({ service: 'heartbeat' });
  const replica = deps.config.replica !== '' ? deps.config.replica.replace(/[^A-Za-z0-9_-]/g, '_') : defaultReplicaName();
  const agents = new AgentRegistry(await deps.bus.kv(BUCKETS.agents), logger);
  await agents.start();
  const impl = new HeartbeatServiceImpl({
    config: deps.config.heartbeat,
    replica,
    registry: agents,
    publisher: deps.bus,
    agentsSubject,
    samplesSubject,
    metrics: deps.registry,
    logger,
    shutdown: deps.server.shutdownSignal,
  });
  await impl.start();
  logger.info({ replica }, 'heartbeat: started');
  // Agents' gRPC streams take the server's native path (thousands of streams, a message a
  // second each); Connect and gRPC-Web clients of the same method still reach `connect`.
  deps.server.registerGrpcStream(HeartbeatService.method.connect, (call) => impl.openConnect(call, call));
  const served = serveContract(deps, HeartbeatService, {
    connect: (reqs, ctx) => impl.connect(reqs, ctx),
    getAgent: (req, ctx) => impl.getAgent(req, ctx),
    listAgents: (req, ctx) => impl.listAgents(req, ctx),
    watchAgents: (req, ctx) => impl.watchAgents(req, ctx),
  }, async () => {
    await impl.stop();
    agents.close();
  });
  return { value: impl, stop: served.stop };
}
