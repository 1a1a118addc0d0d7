/** The wire contract shared by the gateway and the SDK: API types and the error catalogue. */
export type * from './api.js';
export * from './error-codes.js';
