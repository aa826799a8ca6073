/** Conversions between the wire contracts and the store's model. */
import { create } from '@bufbuild/protobuf';
import { LabelSchema, SeriesSchema, type Series } from '../../libs/contracts/telemesh/common/v1/common_pb.js';
import type { SeriesSamples } from '../../libs/model/index.js';

/** Wire series (bigint timestamps) to the store's columnar model. */
export function seriesFromWire(series: readonly Series[]): SeriesSamples[] {
  return series.map((s) => ({
    labels: s.labels.map((l) => ({ name: l.name, value: l.value })),
    timestampsMs: s.timestampsMs.map(Number),
    values: s.values,
  }));
}

/** The store's series to wire series. */
export function seriesToWire(series: readonly SeriesSamples[]): Series[] {
  return series.map((s) =>
    create(SeriesSchema, {
      labels: s.labels.map((l) => create(LabelSchema, l)),
      timestampsMs: s.timestampsMs.map((t) => BigInt(t)),
      values: [...s.values],
    }),
  );
}
