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
  tieWordEmbeddings: boolean;
  bosTokenId: number | null;
  eosTokenId: number[]; // one or several
}

export type WeightDtype = "F32" | "F16" | "BF16";

/** Where one tensor's bytes live: validated against the file's size and the config. */
export interface TensorEntry {
  name: string;
  path: string; // absolute path of the .safetensors file
  dtype: WeightDtype;
  shape: number[];
  offset: number; // absolute byte offset of the first element in the file
  nbytes: number;
}

export interface Checkpoint {
  dir: string;
  config: Qwen2Config;
  tensors: Map<string, TensorEntry>;
}
