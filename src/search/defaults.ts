// Every default hyper-parameter of the two searches, in one place (docs/algorithm.md gives the
// reasons). The searches fill unset options from here, the CLI's option tables show and use these
// values, and the native side has none of its own: model.ts sends every field of a request (and
// holds the defaults of its own low-level options: progress cadence, Model.orthoBlock's in-block mode).

/** MELBO-ortho (docs/algorithm.md §4): the original's values, melbo's block mode aside. */
export const ORTHO_DEFAULTS = {
  count: 32, // the CLI's; the API requires a count
  source: 8,
  target: 16,
  block: 1,
  steps: 1000,
  lr: 0.01,
  betas: [0.9, 0.999] as const,
  eps: 1e-8,
  projection: "post" as const,
  blockStart: "random" as const,
  // Norm of rows 2…B's random starts, × ‖θ0‖: small, so that a row is a direction to grow rather
  // than a large random vector to undo (measured in docs/algorithm.md, "Block mode"; runs saved
  // with the earlier default 1 resume with `startNorm: 1`).
  startNorm: 0.01,
  inBlock: "first-then-symmetric" as const,
  gradientInBlock: true,
  seed: 0,
  lossTolerance: 0, // 0 = off
  minNorm: 0.1,
  patience: 10,
  dropNorm: 1e-5,
};

/** MELBO training (docs/algorithm.md §3); the blocks depend on the model (defaultBlocks in train.ts). */
export const TRAIN_DEFAULTS = {
  p: 2,
  steps: 300,
  independent: false,
  batch: 32,
  seed: 0,
  lr: 1e-3,
  betas: [0.9, 0.98] as const,
  eps: 1e-8,
  weightDecay: 0,
  amsgrad: true,
};
