/**
 * Validation of incoming series. Invalid parts are rejected with a reason naming the
 * field and the limit; everything valid in the same request is kept. A series whose
 * labels are invalid is rejected whole (its identity is unknown); a sample whose
 * timestamp is out of range is rejected alone.
 */
import { create } from '@bufbuild/protobuf';
import { type Series, SeriesSchema, FieldViolationSchema } from '../../libs/contracts/telemesh/common/v1/common_pb.js';
import { SeriesRejectionSchema, type SeriesRejection } from '../../libs/contracts/telemesh/ingest/v1/ingest_pb.js';
import { canonicalLabels, isValidLabelName, isValidMetricName, METRIC_NAME_LABEL } from '../../libs/model/index.js';
import type { IngestLimits } from './config.js';

/** Outcome of {@link validateSeries}. */
export interface Validated {
  /** Series to store: canonical labels, only accepted samples, `0` timestamps set to now. */
  readonly series: Series[];
  readonly acceptedSamples: number;
  readonly rejectedSamples: number;
  readonly rejections: SeriesRejection[];
}

/** Validates the series of one request against the limits, at time `nowMs`. */
export function validateSeries(input: readonly Series[], limits: IngestLimits, nowMs: number): Validated {
  const out: Series[] = [];
  const rejections: SeriesRejection[] = [];
  let accepted = 0;
  let rejected = 0;
  const reject = (index: number, count: number, field: string, description: string) => {
    rejected += count;
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

  input.forEach((s, i) => {
    const n = Math.max(s.timestampsMs.length, s.values.length);
    if (s.timestampsMs.length !== s.values.length) {
      return reject(i, n, `series[${i}].values`, `has ${s.values.length} values for ${s.timestampsMs.length} timestamps; they must pair up`);
    }
    const labelProblem = checkLabels(s, i, limits);
    if (labelProblem) return reject(i, n, labelProblem.field, labelProblem.description);

    const ts: bigint[] = [];
    const vs: number[] = [];
    let firstBad: { field: string; description: string } | undefined;
    let bad = 0;
    for (let j = 0; j < n; j++) {
      let t = s.timestampsMs[j]!;
      if (t === 0n) t = BigInt(nowMs);
      const tn = Number(t);
      if (tn < minTs || tn > maxTs) {
        bad++;
        firstBad ??= {
          field: `series[${i}].timestamps_ms[${j}]`,
          description:
            tn < minTs
              ? `timestamp ${tn} is older than the accepted age (ingestion.maxSampleAgeMs = ${limits.maxSampleAgeMs})`
              : `timestamp ${tn} is too far in the future (ingestion.maxFutureMs = ${limits.maxFutureMs})`,
        };
        continue;
      }
      ts.push(t);
      vs.push(s.values[j]!);
    }
    if (bad > 0) reject(i, bad, firstBad!.field, bad > 1 ? `${firstBad!.description} (and ${bad - 1} more samples of this series)` : firstBad!.description);
    if (ts.length === 0) return;
    accepted += ts.length;
    out.push(create(SeriesSchema, { labels: canonicalLabels(s.labels), timestampsMs: ts, values: vs, type: s.type }));
  });
  return { series: out, acceptedSamples: accepted, rejectedSamples: rejected, rejections };
}

function checkLabels(s: Series, i: number, limits: IngestLimits): { field: string; description: string } | undefined {
  if (s.labels.length > limits.maxLabelsPerSeries) {
    return { field: `series[${i}].labels`, description: `has ${s.labels.length} labels, more than ingestion.maxLabelsPerSeries = ${limits.maxLabelsPerSeries}` };
  }
  const seen = new Set<string>();
  let hasName = false;
  for (let k = 0; k < s.labels.length; k++) {
    const { name, value } = s.labels[k]!;
    const field = `series[${i}].labels[${k}]`;
    if (name.length > limits.maxLabelNameLength) {
      return { field: `${field}.name`, description: `label name is ${name.length} characters, more than ingestion.maxLabelNameLength = ${limits.maxLabelNameLength}` };
    }
    if (value.length > limits.maxLabelValueLength) {
      return { field: `${field}.value`, description: `value of label ${name} is ${value.length} characters, more than ingestion.maxLabelValueLength = ${limits.maxLabelValueLength}` };
    }
    if (name === METRIC_NAME_LABEL) {
      hasName = true;
      if (!isValidMetricName(value)) {
        return { field: `${field}.value`, description: `invalid metric name ${JSON.stringify(value)}: must match [a-zA-Z_:][a-zA-Z0-9_:]*` };
      }
    } else if (!isValidLabelName(name)) {
      return { field: `${field}.name`, description: `invalid label name ${JSON.stringify(name)}: must match [a-zA-Z_][a-zA-Z0-9_]*` };
    }
    if (seen.has(name)) return { field: `${field}.name`, description: `duplicate label name ${JSON.stringify(name)}` };
    seen.add(name);
  }
  if (!hasName) return { field: `series[${i}].labels`, description: 'missing metric name (label __name__)' };
  return undefined;
}
