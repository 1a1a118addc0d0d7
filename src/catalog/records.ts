/** Moved to src/model/records.ts; this re-export goes once every import is updated. */
export * from '../model/records.js';
