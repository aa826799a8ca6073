/**
 * The PromQL functions the engine implements, with their signatures, so the parser can
 * check calls the way Prometheus does before anything is evaluated.
 */

/** A function argument's type. */
export type ArgType = 'scalar' | 'string' | 'vector' | 'matrix';

/** A function's signature. */
export interface FunctionSignature {
  readonly args: readonly ArgType[];
  readonly returns: 'scalar' | 'vector';
  /** How many trailing arguments may be left out. */
  readonly optional?: number;
  /** True when the last argument type repeats (label_join). */
  readonly variadic?: boolean;
  /** True when the result depends on the evaluation time even for constant input (time()). */
  readonly timeDependent?: boolean;
}

const v: ArgType = 'vector';
const m: ArgType = 'matrix';
const s: ArgType = 'scalar';
const str: ArgType = 'string';

const simple = (): FunctionSignature => ({ args: [v], returns: 'vector' });
const overTime = (): FunctionSignature => ({ args: [m], returns: 'vector' });
const dateFn = (): FunctionSignature => ({ args: [v], returns: 'vector', optional: 1, timeDependent: true });

/** Every implemented function by name. */
export const FUNCTIONS: ReadonlyMap<string, FunctionSignature> = new Map<string, FunctionSignature>([
  ['abs', simple()],
  ['ceil', simple()],
  ['floor', simple()],
  ['sqrt', simple()],
  ['exp', simple()],
  ['ln', simple()],
  ['log2', simple()],
  ['log10', simple()],
  ['sgn', simple()],
  ['acos', simple()],
  ['acosh', simple()],
  ['asin', simple()],
  ['asinh', simple()],
  ['atan', simple()],
  ['atanh', simple()],
  ['cos', simple()],
  ['cosh', simple()],
  ['sin', simple()],
  ['sinh', simple()],
  ['tan', simple()],
  ['tanh', simple()],
  ['deg', simple()],
  ['rad', simple()],
  ['pi', { args: [], returns: 'scalar' }],
  ['round', { args: [v, s], returns: 'vector', optional: 1 }],
  ['clamp', { args: [v, s, s], returns: 'vector' }],
  ['clamp_min', { args: [v, s], returns: 'vector' }],
  ['clamp_max', { args: [v, s], returns: 'vector' }],
  ['timestamp', simple()],
  ['time', { args: [], returns: 'scalar', timeDependent: true }],
  ['vector', { args: [s], returns: 'vector' }],
  ['scalar', { args: [v], returns: 'scalar' }],
  ['absent', simple()],
  ['absent_over_time', overTime()],
  ['label_replace', { args: [v, str, str, str, str], returns: 'vector' }],
  ['label_join', { args: [v, str, str, str], returns: 'vector', variadic: true, optional: 1 }],
  ['sort', simple()],
  ['sort_desc', simple()],
  ['histogram_quantile', { args: [s, v], returns: 'vector' }],
  ['rate', overTime()],
  ['irate', overTime()],
  ['increase', overTime()],
  ['delta', overTime()],
  ['idelta', overTime()],
  ['deriv', overTime()],
  ['predict_linear', { args: [m, s], returns: 'vector' }],
  ['resets', overTime()],
  ['changes', overTime()],
  ['avg_over_time', overTime()],
  ['min_over_time', overTime()],
  ['max_over_time', overTime()],
  ['sum_over_time', overTime()],
  ['count_over_time', overTime()],
  ['last_over_time', overTime()],
  ['present_over_time', overTime()],
  ['stddev_over_time', overTime()],
  ['stdvar_over_time', overTime()],
  ['quantile_over_time', { args: [s, m], returns: 'vector' }],
  // Prometheus 2's holt_winters under its Prometheus 3 name: the grammar we parse with is
  // Prometheus 3's and no longer knows `holt_winters`.
  ['double_exponential_smoothing', { args: [m, s, s], returns: 'vector' }],
  // Native-histogram functions: Telemesh stores float samples only, and on float samples
  // Prometheus returns nothing from these either.
  ['histogram_count', simple()],
  ['histogram_sum', simple()],
  ['histogram_fraction', { args: [s, s, v], returns: 'vector' }],
  ['day_of_month', dateFn()],
  ['day_of_week', dateFn()],
  ['day_of_year', dateFn()],
  ['days_in_month', dateFn()],
  ['hour', dateFn()],
  ['minute', dateFn()],
  ['month', dateFn()],
  ['year', dateFn()],
]);
