// The offline binlog decoder lives with the reader it mirrors (agent/source/binlog-replay.ts: the agent's
// start-up warm-up uses it too); re-exported here for the decoder's unit tests and bench/decode.mjs.
export * from "../agent/source/binlog-replay.js";
