// Kernels never allocate or use strings; an abort (only reachable through a bug) traps, and the
// trap surfaces in JS as a WebAssembly.RuntimeError in the calling thread.
export function abort(message: usize, fileName: usize, line: u32, column: u32): void {
  unreachable();
}
