// Test data comes from the same seeded generator the demo and make-model use.
export * from '../../src/core/rng.js';
