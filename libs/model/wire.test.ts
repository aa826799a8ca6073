import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { create } from '@bufbuild/protobuf';
import { LabelMatcherSchema, MatchType } from '../contracts/telemesh/common/v1/common_pb.js';
import { InvalidArgumentError } from '../runtime/errors.js';
import { matchersFromWire } from './wire.js';

const m = (type: MatchType, name: string, value: string) => create(LabelMatcherSchema, { type, name, value });

describe('matchersFromWire', () => {
  it('maps the four operators', () => {
    assert.deepEqual(
      matchersFromWire([m(MatchType.EQUAL, 'a', '1'), m(MatchType.NOT_EQUAL, 'b', '2'), m(MatchType.REGEX, 'c', '3.*'), m(MatchType.NOT_REGEX, 'd', '4|5')], 'matchers'),
      [
        { op: '=', name: 'a', value: '1' },
        { op: '!=', name: 'b', value: '2' },
        { op: '=~', name: 'c', value: '3.*' },
        { op: '!~', name: 'd', value: '4|5' },
      ],
    );
  });

  it('names the field of an unset type and of a bad regular expression', () => {
    assert.throws(() => matchersFromWire([m(MatchType.EQUAL, 'a', '1'), m(MatchType.UNSPECIFIED, 'b', '')], 'matchers'), (e: unknown) => e instanceof InvalidArgumentError && e.violations[0]!.field === 'matchers[1].type');
    assert.throws(() => matchersFromWire([m(MatchType.REGEX, 'a', '(')], 'sel'), (e: unknown) => e instanceof InvalidArgumentError && /^sel\[0\]\.value: invalid regular expression/.test(e.message));
  });
});
