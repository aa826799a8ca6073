/**
 * The validation rules of incoming series, one implementation each, applied by the
 * ingestion path (pipeline.ts) to every protocol. Invalid parts are rejected with a
 * reason naming the field and the limit; everything valid in the same request is kept. A
 * series whose labels are invalid is rejected whole (its identity is unknown); a sample
 * whose timestamp is out of range is rejected alone. NaN and ±Inf values are stored, as
 * Prometheus stores them.
 */
import type { Label } from '../../libs/contracts/telemesh/common/v1/common_pb.js';
import { isValidLabelName, isValidMetricName, METRIC_NAME_LABEL } from '../../libs/model/index.js';
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

/** Why a label set or a sample is refused: the field (relative to the request), a message naming the limit, the reason code. */
export interface Problem {
  readonly field: string;
  readonly description: string;
  readonly reason: RejectReason;
}

/** Accepted timestamps at `nowMs`, inclusive, Unix ms (a `0` timestamp means now). */
export function sampleWindow(limits: IngestLimits, nowMs: number): { readonly minTs: number; readonly maxTs: number } {
  return { minTs: nowMs - limits.maxSampleAgeMs, maxTs: nowMs + limits.maxFutureMs };
}

/** What is wrong with timestamp `t` (already outside {@link sampleWindow}), the `j`th of series field `series`. */
export function timestampProblem(t: number, j: number, series: string, limits: IngestLimits, nowMs: number): Problem {
  const field = `${series}.timestamps_ms[${j}]`;
  return t < nowMs - limits.maxSampleAgeMs
    ? { field, description: `timestamp ${t} is older than the accepted age (ingestion.maxSampleAgeMs = ${limits.maxSampleAgeMs})`, reason: 'too_old' }
    : { field, description: `timestamp ${t} is too far in the future (ingestion.maxFutureMs = ${limits.maxFutureMs})`, reason: 'too_new' };
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
): Problem | undefined {
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
