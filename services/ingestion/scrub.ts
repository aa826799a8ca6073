/**
 * Privacy scrubbing: labels whose name or value looks sensitive (passwords, tokens,
 * authorization headers, e-mail addresses) are hashed or dropped before anything is
 * published, so a secret an agent leaked into a label never reaches the store.
 */
import { createHash } from 'node:crypto';
import type { Label } from '../../libs/contracts/telemesh/common/v1/common_pb.js';
import { METRIC_NAME_LABEL } from '../../libs/model/index.js';
import { StartupError } from '../../libs/runtime/errors.js';
import type { IngestLimits } from './config.js';

/** Why a label was scrubbed. */
export type ScrubReason = 'name' | 'value';

/** Scrubs one label set in place of a copy; reports each scrubbed label. */
export interface Scrubber {
  /**
   * Returns `labels` itself when nothing is sensitive (the common case allocates nothing),
   * otherwise a new array with sensitive labels hashed or removed.
   */
  scrub(labels: Label[], onScrub: (reason: ScrubReason) => void): Label[];
}

const NOOP: Scrubber = { scrub: (labels) => labels };

/** Builds the scrubber the `ingestion.scrub*` settings describe. */
export function createScrubber(limits: Pick<IngestLimits, 'scrubEnabled' | 'scrubAction' | 'scrubNamePattern' | 'scrubValuePattern'>): Scrubber {
  if (!limits.scrubEnabled) return NOOP;
  const nameRe = compile(limits.scrubNamePattern, 'i', 'ingestion.scrubNamePattern');
  const valueRe = compile(limits.scrubValuePattern, '', 'ingestion.scrubValuePattern');
  // Label names repeat across series; remember the verdict per name.
  const nameVerdict = new Map<string, boolean>();
  const sensitiveName = (name: string): boolean => {
    let v = nameVerdict.get(name);
    if (v === undefined) {
      v = name !== METRIC_NAME_LABEL && nameRe !== undefined && nameRe.test(name);
      if (nameVerdict.size < 10_000) nameVerdict.set(name, v);
    }
    return v;
  };
  const drop = limits.scrubAction === 'drop';
  return {
    scrub(labels, onScrub) {
      let out: Label[] | undefined;
      for (let i = 0; i < labels.length; i++) {
        const l = labels[i]!;
        let reason: ScrubReason | undefined;
        if (sensitiveName(l.name)) reason = 'name';
        else if (l.name !== METRIC_NAME_LABEL && valueRe !== undefined && l.value !== '' && valueRe.test(l.value)) reason = 'value';
        if (reason === undefined) {
          out?.push(l);
          continue;
        }
        out ??= labels.slice(0, i);
        onScrub(reason);
        if (!drop) out.push({ ...l, value: hashValue(l.value) });
      }
      return out ?? labels;
    },
  };
}

/** The replacement value of a hashed label: stable, so the series keeps its identity. */
export function hashValue(value: string): string {
  return `sha256:${createHash('sha256').update(value).digest('hex').slice(0, 16)}`;
}

function compile(pattern: string, flags: string, setting: string): RegExp | undefined {
  if (pattern === '') return undefined;
  try {
    return new RegExp(pattern, flags);
  } catch (err) {
    throw new StartupError(`${setting}: not a valid regular expression: ${(err as Error).message}`, setting);
  }
}
