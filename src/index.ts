export * from './core/errors.js';
export * from './core/half.js';
export * from './core/quant.js';
export * from './core/dtype.js';
export * from './core/arena.js';
export * from './kv/types.js';
