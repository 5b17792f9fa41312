// graphile.js — one graphile-worker process for bench/graphile.sh (the job queue the issue measures
// weir against). Usage: node bench/graphile.js MODE TRACE CONCURRENCY CHAIN_LEN, with the database
// in GW_DB. It writes TRACE.ready once it is listening, and on SIGTERM its trace to TRACE: one line
// per job start and end, "start|done I USEC", on the system's monotonic clock.
//
//   chain    "link" jobs in a line: once a link's success is written back, the next one is added,
//            so that a link starts only after its predecessor's completion is durable, as a task
//            of a weir chain does (graphile-worker has no DAG: this is how its users chain jobs)
//   noop     "noop" jobs, as they come: graphile-worker's defaults (no local queue, no batching)
//   batched  "noop" jobs with its batching on: a local queue of CONCURRENCY + 1 jobs per process
//            and completions gathered (completeJobBatchDelay 0), as its performance guide advises
"use strict";
const fs = require("fs");
const { run, Logger } = require("graphile-worker");

const [mode, traceFile, concurrency, chainLen] =
  [process.argv[2], process.argv[3], Number(process.argv[4]), Number(process.argv[5] || 0)];
const usec = () => Number(process.hrtime.bigint() / 1000n);
const lines = [];

async function main() {
  const batched = mode === "batched";
  const runner = await run({
    connectionString: process.env.GW_DB,
    concurrency,
    maxPoolSize: concurrency + 2,
    noHandleSignals: true,
    preset: { worker: batched ? { localQueue: { size: concurrency + 1 }, completeJobBatchDelay: 0 } : {} },
    logger: new Logger(() => () => {}),
    taskList: {
      noop: async () => {
        lines.push(`start 0 ${usec()}`, `done 0 ${usec()}`);
      },
      link: async (payload) => {
        lines.push(`start ${payload.i} ${usec()}`, `done ${payload.i} ${usec()}`);
      },
    },
  });
  if (mode === "chain") {
    runner.events.on("job:complete", ({ job, error }) => {
      if (!error && job.task_identifier === "link" && job.payload.i < chainLen)
        runner.addJob("link", { i: job.payload.i + 1 }).catch((e) => console.error(e));
    });
  }
  const stop = async () => {
    fs.writeFileSync(traceFile, lines.join("\n") + "\n");
    await runner.stop();
    process.exit(0);
  };
  process.on("SIGTERM", stop);
  fs.writeFileSync(traceFile + ".ready", "");
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
