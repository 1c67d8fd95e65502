// How every long job reports while it runs. ortho, train and eval take the same kind of callbacks
// in their options (onProgress, and onVector for the searches), each progress event starts with
// the same fields, and each job resolves with its result: one progress bar in the CLI serves all
// three. Callbacks rather than an async iterable: the result of a job is a value, not an event.

/** The fields every progress event starts with. */
export interface JobProgress {
  /** Units finished: vectors for the searches, entries for eval; fractional inside a native block. */
  done: number;
  /** Units the job will have finished at the end. */
  total: number;
  /** Seconds left at the rate measured in this process (Infinity before there is one). */
  etaSeconds: number;
}

/** Every progress event of a search's native block: JobProgress plus the step loop's position. */
export interface SearchProgress extends JobProgress {
  /** Vectors finished before the running block. */
  finished: number;
  /** Vectors in the running block. */
  rows: number;
  step: number;
  steps: number;
  /** Vector-steps per second since the job started in this process. */
  vectorStepsPerSecond: number;
}

/**
 * The progress of a search at step `step` of a block of `rows` vectors, `finished` vectors being
 * done before it (`resumedFrom` of them before this process started, at `started`).
 */
export function searchProgress(
  at: { finished: number; rows: number; step: number; steps: number },
  job: { total: number; resumedFrom: number; started: number },
): SearchProgress {
  const seconds = (performance.now() - job.started) / 1000;
  const vectorSteps = (at.finished - job.resumedFrom) * at.steps + at.step * at.rows;
  const rate = vectorSteps / Math.max(seconds, 1e-9);
  const left = (job.total - at.finished) * at.steps - at.step * at.rows;
  return {
    done: at.finished + (at.steps > 0 ? (at.step / at.steps) * at.rows : 0),
    total: job.total,
    etaSeconds: rate > 0 ? left / rate : Infinity,
    ...at,
    vectorStepsPerSecond: rate,
  };
}

/** The ETA of a job that has done `done` of `total` units since `started` (`from` of them before it). */
export function etaSeconds(done: number, total: number, from: number, started: number): number {
  const seconds = (performance.now() - started) / 1000;
  const rate = (done - from) / Math.max(seconds, 1e-9);
  return rate > 0 ? (total - done) / rate : Infinity;
}
