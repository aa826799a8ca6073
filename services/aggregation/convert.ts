/** Conversions between the wire contracts and the store's model. */
import { create } from '@bufbuild/protobuf';
import { LabelSchema, SeriesSchema, type Series } from '../../libs/contracts/telemesh/common/v1/common_pb.js';
import type { SeriesSamples } from '../../libs/model/index.js';

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
