/** The model description every room shares: one normalised config, whatever the checkpoint format. */
/** The architectures the one Llama-family forward supports; each is a set of feature flags. */
export type Architecture = 'llama' | 'mistral' | 'qwen2' | 'qwen3' | 'qwen3_moe' | 'gemma3' | 'gpt_oss';

export type RopeScaling = Llama3RopeScaling | YarnRopeScaling;

export interface Llama3RopeScaling {
  type: 'llama3';
  factor: number;
  lowFreqFactor: number;
  highFreqFactor: number;
  originalMaxPositionEmbeddings: number;
}

/**
 * YaRN (GPT-OSS): frequency bands below the correction range are interpolated (divided by factor),
 * those above kept, the range between mixed linearly; cos and sin are scaled by attentionFactor.
 */
export interface YarnRopeScaling {
  type: 'yarn';
  factor: number;
  betaFast: number;
  betaSlow: number;
  originalMaxPositionEmbeddings: number;
  /** Round the correction range outward to whole bands (Hugging Face's default; llama.cpp always does). */
  truncate: boolean;
  /** The amplitude of the rotation (default 0.1 ln(factor) + 1). */
  attentionFactor: number;
}

/** YaRN's default amplitude for a factor (transformers' and llama.cpp's get_mscale). */
export function yarnAmplitude(factor: number): number {
  return factor <= 1 ? 1 : 0.1 * Math.log(factor) + 1;
}

/** One normalised model description, whatever the checkpoint format. */
export interface ModelConfig {
  architecture: Architecture;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  vocabSize: number;
  /** Context length: the largest number of positions the model may process. */
  maxPositions: number;
  rmsNormEps: number;
  ropeTheta: number;
  ropeScaling: RopeScaling | null;
  /** Bias on q, k and v projections (qwen2, llama attention_bias). */
  qkvBias: boolean;
  /** Bias on the o projection (llama attention_bias). */
  oBias: boolean;
  /** Bias on gate/up/down (llama mlp_bias). */
  mlpBias: boolean;
  /** Per-head RMSNorm of q and k before RoPE (qwen3). */
  qkNorm: boolean;
  tieWordEmbeddings: boolean;
  /**
   * Sliding-window attention: a token of a sliding layer sees only the `slidingWindow` positions ending
   * at its own (the window counts the token itself, as Hugging Face's masks do). `slidingLayers[l]`
   * says which layers slide (all of them for Mistral's window; some for Qwen2's max_window_layers and
   * interleaved local/global models). Absent: every layer attends to the whole cache.
   */
  slidingWindow?: number;
  slidingLayers?: readonly boolean[];
  /** RoPE base of the sliding layers when it differs from ropeTheta (Gemma 3: 10000, unscaled). */
  ropeLocalTheta?: number;
  /** Linear RoPE scaling of the full-attention layers: positions divided by this (Gemma 3 4B+: 8). */
  ropeLinearFactor?: number;
  /**
   * The feed-forward's gate activation (default silu; Gemma: the tanh approximation of GELU; GPT-OSS:
   * its clamped SwiGLU, see Activation in backend/backend.ts).
   */
  hiddenAct?: 'silu' | 'gelu-tanh' | 'swiglu-oai';
  /** GPT-OSS: a learned logit per query head and layer that joins the attention softmax's sum. */
  attentionSinks?: boolean;
  /** Embeddings are multiplied by this before the first layer (Gemma: sqrt(hiddenSize)). */
  embedScale?: number;
  /**
   * Gemma's four norms per layer: besides the input norm and the norm before the feed-forward, the
   * attention output and the feed-forward output are each normed before their residual add.
   */
  sandwichNorms?: boolean;
  /** Attention's score scale when it is not 1/sqrt(headDim) (Gemma: query_pre_attn_scalar^-0.5). */
  attentionScale?: number;
  /**
   * The checkpoint stores each RMSNorm weight as w where the multiplier is 1 + w (Hugging Face's
   * Gemma); the loader adds the 1. GGUF files store the multiplier itself.
   */
  normPlusOne?: boolean;
  /** Mixture-of-experts feed-forwards (Qwen3-MoE), on the layers `moe.layers` marks. */
  moe?: MoeConfig;
  bosTokenId: number | null;
  /** Every id that ends generation (config.json and generation_config.json together). */
  eosTokenIds: number[];
}

/**
 * A sparse feed-forward: a router picks `expertsPerToken` of `numExperts` gated feed-forwards (each of
 * width `expertFfn`) per token, by softmax probability, and sums their outputs weighted by those
 * probabilities (renormalised over the chosen ones with normTopK).
 */
export interface MoeConfig {
  numExperts: number;
  expertsPerToken: number;
  expertFfn: number;
  normTopK: boolean;
  /** GPT-OSS: the router has a bias, and each expert's gate, up and down projections have biases. */
  routerBias?: boolean;
  expertBias?: boolean;
  /** Per layer: sparse (true) or the dense feed-forward of width intermediateSize. */
  layers: readonly boolean[];
}

/** The window of layer l's attention: slidingWindow on a sliding layer, 0 (the whole cache) otherwise. */
export function layerWindow(c: ModelConfig, l: number): number {
  return c.slidingWindow !== undefined && c.slidingLayers?.[l] ? c.slidingWindow : 0;
}

/** Key + value bytes one token occupies in the cache, over all layers, at `bytesPerValue`. */
export function kvBytesPerToken(c: ModelConfig, bytesPerValue = 4): number {
  return 2 * c.numLayers * c.numKvHeads * c.headDim * bytesPerValue;
}

/**
 * Largest value of an integer config field (sizes, counts, context length): the kernels index with
 * 32-bit integers, and a larger value is a corrupt file, not a model.
 */
export const MAX_CONFIG_INT = 2 ** 31 - 1;
