// Linear layers (matvec for decode, matmul for prefill) over weights in every storage dtype, with
// f32 activations and outputs (see index.ts for the calling convention):
//   linear-float.ts  f32 / f16 / bf16 weights: f32 multiply-adds, weights decoded in registers
//   linear-quant.ts  q8_0 / q4_0 weights: activations quantized per 32-block, integer block dots
export * from './linear-float';
export * from './linear-quant';
