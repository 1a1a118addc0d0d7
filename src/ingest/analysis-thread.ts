/**
 * The analysis worker's entry (see analysis-worker.ts for the protocol). One upload at a time: `start`
 * creates the body's analysis over the upload's shared slabs, each `data` message names a slab and a
 * length to analyse and is acknowledged with `ack` (so the slab can be reused), `end` answers `result` or
 * `error`. After the first error every further slab is acknowledged unread until the next `start`.
 */
import { parentPort } from 'node:worker_threads';
import { BodyAnalysis, type BodyAnalysisStart, serializeError } from './body-analysis.js';
import type { FromMain, ToMain } from './analysis-worker.js';

const port = parentPort;
if (!port) throw new Error('analysis-thread.ts runs as a worker thread');

let slabs: Uint8Array[] = [];
let analysis: BodyAnalysis | null = null;
const send = (message: ToMain) => port.postMessage(message);

port.on('message', (message: FromMain) => {
  switch (message.type) {
    case 'start': {
      slabs = message.slabs.map((s) => new Uint8Array(s));
      const { type: _type, slabs: _slabs, ...start } = message;
      analysis = guard(() => new BodyAnalysis(start satisfies BodyAnalysisStart));
      break;
    }
    case 'data': {
      const current = analysis;
      if (current) guard(() => current.update(slabs[message.slot].subarray(0, message.length)));
      send({ type: 'ack', slot: message.slot });
      break;
    }
    case 'end': {
      const current = analysis;
      analysis = null;
      slabs = [];
      if (current) {
        const result = guard(() => current.finish());
        if (result) send({ type: 'result', ...result });
      }
      break;
    }
  }
});

/** Runs `work`; on a throw reports the error once and stops analysing this body. */
function guard<T>(work: () => T): T | null {
  try {
    return work();
  } catch (err) {
    analysis = null;
    send({ type: 'error', error: serializeError(err) });
    return null;
  }
}
