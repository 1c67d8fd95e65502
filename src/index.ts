// melbo's public API. The raw native addon is never exported: only these wrappers.
export { loadModel, Model } from "./model/model.js";
export type { LoadOptions, ForwardOptions, ForwardResult, GenerateOptions, OrthoLossGradOptions, Steering } from "./model/model.js";
export { makeTestModel } from "./model/make-test-model.js";
export type { TestModelOptions } from "./model/make-test-model.js";
export { readCheckpoint } from "./model/checkpoint.js";
export type { Qwen2Config, Checkpoint } from "./model/types.js";
export type { TextCodec } from "./model/tokenizer.js";
export { MelboError } from "./errors.js";
export { setThreads, getThreads } from "./native.js";
export type { ComputeDtype } from "./native.js";
export { ortho, orthoInputs } from "./search/ortho.js";
export type { OrthoOptions, OrthoEvent, OrthoSettings, Projection, StopReason } from "./search/ortho.js";
export { maxAbsCosine } from "./search/basis.js";
export { readVectors, writeVectors, readVectorRef } from "./io/vectors.js";
