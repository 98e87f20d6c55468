// The kernel module's entry: every export is a kernel `(args: usize, begin: i32, end: i32): void`
// that reads its parameters from the argument block at `args` (4-byte slots, see simd.ts argI32)
// and does the part [begin, end) of its work, so any thread can run any slice of any kernel.
export * from './probe';
export * from './linear';
export * from './elementwise';
export * from './attention';
