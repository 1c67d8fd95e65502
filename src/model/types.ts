// Shared types of a Hugging Face Qwen2 checkpoint directory, as melbo reads it.

/** The part of config.json that defines the Qwen2 computation (camelCase, validated). */
export interface Qwen2Config {
  architecture: string; // "Qwen2ForCausalLM"
  hiddenSize: number; // d_model
  intermediateSize: number;
  numLayers: number; // num_hidden_layers
  numHeads: number; // num_attention_heads
  numKvHeads: number; // num_key_value_heads
  headDim: number; // hidden_size / num_attention_heads
  vocabSize: number;
  rmsNormEps: number;
  ropeTheta: number;
  maxPositionEmbeddings: number; // longest sequence (prompt + new tokens)
  tieWordEmbeddings: boolean;
  bosTokenId: number | null;
  eosTokenId: number[]; // one or several
}

export type WeightDtype = "F32" | "F16" | "BF16";

/** Every dtype melbo reads or writes in .safetensors files: weights, plus outputs such as
 *  `tokens` (I32) of `melbo forward`. Other safetensors dtypes are rejected. */
export type SafetensorsDtype = WeightDtype | "F64" | "I64" | "I32";

/** Where one tensor's bytes live: validated against the file's size and the config.
 *  D is WeightDtype for checkpoints; readers of other files may widen it. */
export interface TensorEntry<D extends SafetensorsDtype = WeightDtype> {
  name: string;
  path: string; // absolute path of the .safetensors file
  dtype: D;
  shape: number[];
  offset: number; // absolute byte offset of the first element in the file
  nbytes: number;
}

export interface Checkpoint {
  dir: string;
  config: Qwen2Config;
  tensors: Map<string, TensorEntry>;
}
