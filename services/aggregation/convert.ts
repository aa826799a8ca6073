/** Conversions between the wire contracts and the store's model. */
import { create } from '@bufbuild/protobuf';
import { LabelSchema, MatchType, SeriesSchema, type LabelMatcher, type Series } from '../../libs/contracts/telemesh/common/v1/common_pb.js';
import { InvalidArgumentError } from '../../libs/runtime/errors.js';
import type { Matcher, MatchOp, SeriesSamples } from '../../libs/model/index.js';

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

const OPS: Partial<Record<MatchType, MatchOp>> = {
  [MatchType.EQUAL]: '=',
  [MatchType.NOT_EQUAL]: '!=',
  [MatchType.REGEX]: '=~',
  [MatchType.NOT_REGEX]: '!~',
};

/** Wire matchers to model matchers; an unset type is an error naming the field. */
export function matchersFromWire(matchers: readonly LabelMatcher[], field: string): Matcher[] {
  return matchers.map((m, i) => {
    const op = OPS[m.type];
    if (!op) throw new InvalidArgumentError(`${field}[${i}].type: matcher type must be set`, [{ field: `${field}[${i}].type`, description: 'must be set' }]);
    return { op, name: m.name, value: m.value };
  });
}
