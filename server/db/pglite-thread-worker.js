// The embedded database's own thread (server/db/pglite-thread.ts starts it).
// Plain JavaScript, not TypeScript: a worker thread runs this file as it is,
// both from dist/ and from the sources under vitest (copied beside the
// compiled code by scripts/copy-sql.mjs).
//
// PGlite runs PostgreSQL compiled to WebAssembly on the thread that calls it.
// Here, that is this thread, so the server's main thread (HTTP/2, the RPC
// layer) no longer stops for every query. One request at a time (the dialect's
// mutex sends one), answered in order:
//   { id, bytes }  -> { id, parseComplete, error?, result?, inTransaction }
//   { id, close }  -> { id, closed }
import { parentPort, workerData } from "node:worker_threads";
import { PGlite, parse, types } from "@electric-sql/pglite";

const { dataDir, postgresqlconf } = workerData;

let pglite;
try {
  pglite = await PGlite.create(dataDir, {
    // int8 as text, lossless (server/db/database.ts: the same mapping as pg's).
    parsers: { [types.INT8]: (value) => value },
    postgresqlconf,
  });
  await pglite.waitReady;
  parentPort.postMessage({ ready: true });
} catch (err) {
  parentPort.postMessage({ ready: false, error: errorFields(err) });
}

let queue = Promise.resolve();
parentPort.on("message", (request) => {
  queue = queue.then(() => answer(request));
});

async function answer(request) {
  if (request.close) {
    try {
      if (!pglite.closed) await pglite.close();
      parentPort.postMessage({ id: request.id, closed: true });
    } catch (err) {
      parentPort.postMessage({ id: request.id, closed: true, error: errorFields(err) });
    }
    return;
  }
  try {
    const messages = await pglite.execProtocolStream(request.bytes, { syncToFs: false, throwOnError: false });
    const parseComplete = messages.some((m) => m.name === "parseComplete");
    const error = messages.find((m) => m.name === "error");
    if (error) {
      parentPort.postMessage({ id: request.id, parseComplete, error: errorFields(error), inTransaction: pglite.isInTransaction() });
      return;
    }
    if (!pglite.isInTransaction()) await pglite.syncToFs();
    const [result] = parse.parseResults(messages, pglite.parsers);
    parentPort.postMessage({
      id: request.id,
      parseComplete,
      result: result && { rows: result.rows ?? [], command: result.command, rowCount: result.rowCount, affectedRows: result.affectedRows },
      inTransaction: pglite.isInTransaction(),
    });
  } catch (err) {
    parentPort.postMessage({ id: request.id, parseComplete: false, error: errorFields(err), inTransaction: false });
  }
}

/** An error as plain data (its message, SQLSTATE code and the rest of PostgreSQL's fields), rebuilt on the other side. */
function errorFields(err) {
  const out = { message: err instanceof Error ? err.message : String(err) };
  if (err && typeof err === "object") {
    for (const [k, v] of Object.entries(err)) {
      if (v === undefined || typeof v === "function" || (typeof v === "object" && v !== null)) continue;
      out[k] = v;
    }
  }
  return out;
}
