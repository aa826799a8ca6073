/**
 * Validation of incoming series. Invalid parts are rejected with a reason naming the
 * field and the limit; everything valid in the same request is kept. A series whose
 * labels are invalid is rejected whole (its identity is unknown); a sample whose
 * timestamp is out of range is rejected alone. NaN and ±Inf values are stored, as
 * Prometheus stores them.
 */
import { create } from '@bufbuild/protobuf';
import { type Label, type Series, SeriesSchema, FieldViolationSchema } from '../../libs/contracts/telemesh/common/v1/common_pb.js';
import { SeriesRejectionSchema, type SeriesRejection } from '../../libs/contracts/telemesh/ingest/v1/ingest_pb.js';
import { canonicalLabels, isValidLabelName, isValidMetricName, METRIC_NAME_LABEL } from '../../libs/model/index.js';
import type { IngestLimits } from './config.js';

/** Short, stable reason codes (the `reason` label of the rejected-samples counter). */
export type RejectReason =
  | 'malformed'
  | 'labels_per_series'
  | 'label_name_length'
  | 'label_value_length'
  | 'invalid_metric_name'
  | 'invalid_label_name'
  | 'duplicate_label'
  | 'missing_metric_name'
  | 'too_old'
  | 'too_new'
  | 'active_series';

/** Outcome of {@link validateSeries}. */
export interface Validated {
  /** Series to store: canonical labels, only accepted samples, `0` timestamps set to now. */
  readonly series: Series[];
  /** Start time of each stored series (parallel to `series`), when start times were given. */
  readonly startTimesMs: bigint[];
  readonly acceptedSamples: number;
  readonly rejectedSamples: number;
  readonly rejections: SeriesRejection[];
  /** Reason code of each rejection (parallel to `rejections`). */
  readonly reasons: RejectReason[];
}

/** Optional hooks of {@link validateSeries}. */
export interface ValidateOptions {
  /** Field path of input series `i` (default `series[i]`). */
  readonly fieldOf?: (i: number) => string;
  /** Start time per input series, Unix ms (0 = unknown). */
  readonly startTimesMs?: readonly bigint[];
  /** Rewrites labels before they are checked (privacy scrubbing). */
  readonly scrub?: (labels: Label[]) => Label[];
  /**
   * Admits a valid series by its canonical labels (the active-series cap); returns a
   * reason when it is refused.
   */
  readonly admit?: (labels: ReadonlyArray<{ readonly name: string; readonly value: string }>) => string | undefined;
}

const defaultField = (i: number) => `series[${i}]`;

/** Validates the series of one request against the limits, at time `nowMs`. */
export function validateSeries(input: readonly Series[], limits: IngestLimits, nowMs: number, opts: ValidateOptions = {}): Validated {
  const fieldOf = opts.fieldOf ?? defaultField;
  const out: Series[] = [];
  const outStarts: bigint[] = [];
  const rejections: SeriesRejection[] = [];
  const reasons: RejectReason[] = [];
  let accepted = 0;
  let rejected = 0;
  const reject = (index: number, count: number, field: string, description: string, reason: RejectReason) => {
    rejected += count;
    reasons.push(reason);
    rejections.push(
      create(SeriesRejectionSchema, {
        seriesIndex: index,
        rejectedSamples: count,
        violation: create(FieldViolationSchema, { field, description }),
      }),
    );
  };
  const minTs = nowMs - limits.maxSampleAgeMs;
  const maxTs = nowMs + limits.maxFutureMs;
  const nowBig = BigInt(nowMs);

  for (let i = 0; i < input.length; i++) {
    const s = input[i]!;
    const n = Math.max(s.timestampsMs.length, s.values.length);
    if (s.timestampsMs.length !== s.values.length) {
      reject(i, n, `${fieldOf(i)}.values`, `has ${s.values.length} values for ${s.timestampsMs.length} timestamps; they must pair up`, 'malformed');
      continue;
    }
    if (n === 0) continue;
    const labelsIn = opts.scrub ? opts.scrub(s.labels) : s.labels;
    const labelProblem = checkLabels(labelsIn, i, limits, fieldOf);
    if (labelProblem) {
      reject(i, n, labelProblem.field, labelProblem.description, labelProblem.reason);
      continue;
    }
    // Agents usually send labels already sorted: then nothing is copied.
    const labels = isCanonical(labelsIn) ? labelsIn : canonicalLabels(labelsIn);

    // Fast path: every timestamp in range and none to fill in, so the input arrays are
    // reused as they are (no per-sample allocation).
    let clean = true;
    for (let j = 0; j < n; j++) {
      const t = s.timestampsMs[j]!;
      const tn = Number(t);
      if (t === 0n || tn < minTs || tn > maxTs) {
        clean = false;
        break;
      }
    }
    let ts: bigint[] = s.timestampsMs;
    let vs: number[] = s.values;
    if (!clean) {
      ts = [];
      vs = [];
      let firstBad: { field: string; description: string; reason: RejectReason } | undefined;
      let bad = 0;
      for (let j = 0; j < n; j++) {
        let t = s.timestampsMs[j]!;
        if (t === 0n) t = nowBig;
        const tn = Number(t);
        if (tn < minTs || tn > maxTs) {
          bad++;
          firstBad ??=
            tn < minTs
              ? { field: `${fieldOf(i)}.timestamps_ms[${j}]`, description: `timestamp ${tn} is older than the accepted age (ingestion.maxSampleAgeMs = ${limits.maxSampleAgeMs})`, reason: 'too_old' }
              : { field: `${fieldOf(i)}.timestamps_ms[${j}]`, description: `timestamp ${tn} is too far in the future (ingestion.maxFutureMs = ${limits.maxFutureMs})`, reason: 'too_new' };
          continue;
        }
        ts.push(t);
        vs.push(s.values[j]!);
      }
      if (bad > 0) reject(i, bad, firstBad!.field, bad > 1 ? `${firstBad!.description} (and ${bad - 1} more samples of this series)` : firstBad!.description, firstBad!.reason);
      if (ts.length === 0) continue;
    }
    const refusal = opts.admit?.(labels);
    if (refusal !== undefined) {
      reject(i, ts.length, `${fieldOf(i)}.labels`, refusal, 'active_series');
      continue;
    }
    accepted += ts.length;
    out.push(labels === s.labels && ts === s.timestampsMs ? s : create(SeriesSchema, { labels, timestampsMs: ts, values: vs, type: s.type }));
    if (opts.startTimesMs) outStarts.push(opts.startTimesMs[i] ?? 0n);
  }
  return { series: out, startTimesMs: outStarts, acceptedSamples: accepted, rejectedSamples: rejected, rejections, reasons };
}

/** Sorted by name with no empty values: what {@link canonicalLabels} would return. */
export function isCanonical(labels: ReadonlyArray<{ readonly name: string; readonly value: string }>): boolean {
  for (let k = 0; k < labels.length; k++) {
    if (labels[k]!.value === '') return false;
    if (k > 0 && !(labels[k - 1]!.name < labels[k]!.name)) return false;
  }
  return true;
}

/** The first problem of a label set (before canonicalisation), or undefined when it is valid. */
export function checkLabels(
  labels: readonly Label[],
  i: number,
  limits: IngestLimits,
  fieldOf: (i: number) => string,
): { field: string; description: string; reason: RejectReason } | undefined {
  if (labels.length > limits.maxLabelsPerSeries) {
    return { field: `${fieldOf(i)}.labels`, description: `has ${labels.length} labels, more than ingestion.maxLabelsPerSeries = ${limits.maxLabelsPerSeries}`, reason: 'labels_per_series' };
  }
  let hasName = false;
  for (let k = 0; k < labels.length; k++) {
    const { name, value } = labels[k]!;
    if (name.length > limits.maxLabelNameLength) {
      return { field: `${fieldOf(i)}.labels[${k}].name`, description: `label name is ${name.length} characters, more than ingestion.maxLabelNameLength = ${limits.maxLabelNameLength}`, reason: 'label_name_length' };
    }
    if (value.length > limits.maxLabelValueLength) {
      return { field: `${fieldOf(i)}.labels[${k}].value`, description: `value of label ${name} is ${value.length} characters, more than ingestion.maxLabelValueLength = ${limits.maxLabelValueLength}`, reason: 'label_value_length' };
    }
    if (name === METRIC_NAME_LABEL) {
      hasName = true;
      if (!isValidMetricName(value)) {
        return { field: `${fieldOf(i)}.labels[${k}].value`, description: `invalid metric name ${JSON.stringify(value)}: must match [a-zA-Z_:][a-zA-Z0-9_:]*`, reason: 'invalid_metric_name' };
      }
    } else if (!isValidLabelName(name)) {
      return { field: `${fieldOf(i)}.labels[${k}].name`, description: `invalid label name ${JSON.stringify(name)}: must match [a-zA-Z_][a-zA-Z0-9_]*`, reason: 'invalid_label_name' };
    }
    // Label sets are small: a quadratic scan beats allocating a Set per series.
    for (let m = 0; m < k; m++) {
      if (labels[m]!.name === name) return { field: `${fieldOf(i)}.labels[${k}].name`, description: `duplicate label name ${JSON.stringify(name)}`, reason: 'duplicate_label' };
    }
  }
  if (!hasName) return { field: `${fieldOf(i)}.labels`, description: 'missing metric name (label __name__)', reason: 'missing_metric_name' };
  return undefined;
}
