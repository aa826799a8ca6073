/**
 * Self-metrics in Prometheus format (`/metrics`), named `telemesh_<service>_<thing>_<unit>`.
 * One registry per process; libraries register on the registry they are given and reuse
 * a metric another module already registered (several modules share one process in `all`).
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

/** Creates the process registry with Node's default process metrics. */
export function createRegistry(): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'telemesh_' });
  return registry;
}

type Cfg<T extends string> = { name: string; help: string; labelNames?: readonly T[]; collect?: () => void | Promise<void> };

/** A counter on `registry`, or the one already registered under that name. */
export function counter<T extends string>(registry: Registry, cfg: Cfg<T>): Counter<T> {
  return (registry.getSingleMetric(cfg.name) as Counter<T> | undefined) ?? new Counter({ ...cfg, registers: [registry] });
}

/** A gauge on `registry`, or the one already registered under that name. */
export function gauge<T extends string>(registry: Registry, cfg: Cfg<T>): Gauge<T> {
  return (registry.getSingleMetric(cfg.name) as Gauge<T> | undefined) ?? new Gauge({ ...cfg, registers: [registry] });
}

/** A histogram on `registry`, or the one already registered under that name. */
export function histogram<T extends string>(registry: Registry, cfg: Cfg<T> & { buckets?: number[] }): Histogram<T> {
  return (registry.getSingleMetric(cfg.name) as Histogram<T> | undefined) ?? new Histogram({ ...cfg, registers: [registry] });
}
