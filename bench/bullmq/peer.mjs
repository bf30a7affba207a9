// The BullMQ side of `jobhost bench --peer bullmq`: one figure per run, against a Redis on
// loopback, printed as one JSON line on stdout.
//
//   node peer.mjs --port 6379 --figure e2e --jobs 20000 --adders 16 --concurrency 50
//   node peer.mjs --port 6379 --figure wake --samples 200
//   node peer.mjs --port 6379 --figure add-bulk --jobs 100000 --callers 2 --batch 1000
//
// e2e: the adders (one Queue) run in this process, the Worker in a child process of its own,
// as producers and workers usually are deployed; the clock runs from the first add to the
// child's report that it saw the last job's `completed` event. Completed jobs are kept
// (`removeOnComplete` left at its default), as jobhost keeps them.

import { fork } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';

import { Queue, Worker } from 'bullmq';

const args = parseArgs(process.argv.slice(2));
const connection = { host: '127.0.0.1', port: Number(args.port) };
const queueName = args.queue ?? `bench-${process.pid}`;
// Long enough for a slow machine, short enough that a wedged run ends.
const GIVE_UP_MS = 30 * 60 * 1000;

function parseArgs(argv) {
  const parsed = {};
  for (let i = 0; i < argv.length; i += 2) {
    if (!argv[i].startsWith('--') || argv[i + 1] === undefined) {
      throw new Error(`expected --name value pairs, got ${argv.slice(i).join(' ')}`);
    }
    parsed[argv[i].slice(2)] = argv[i + 1];
  }
  if (!parsed.port || !parsed.figure) {
    throw new Error('--port and --figure are required');
  }
  return parsed;
}

function count(name, fallback) {
  const value = Number(args[name] ?? fallback);
  if (!Number.isInteger(value) || value < 1) {
    throw new Error(`--${name} must be a positive integer`);
  }
  return value;
}

function quantile(sorted, q) {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(Math.floor(sorted.length * q), sorted.length - 1)];
}

// What the figure ran on, read from the running systems rather than assumed.
async function environment(queue) {
  const client = await queue.client;
  const [, appendonly] = await client.config('GET', 'appendonly');
  const [, appendfsync] = await client.config('GET', 'appendfsync');
  const info = await client.info('server');
  const redisVersion = /redis_version:(\S+)/.exec(info)?.[1] ?? 'unknown';
  const bullmq = JSON.parse(
    readFileSync(new URL('./node_modules/bullmq/package.json', import.meta.url), 'utf8'),
  );
  return {
    bullmq_version: bullmq.version,
    redis_version: redisVersion,
    appendonly,
    appendfsync,
    node_version: process.versions.node,
  };
}

// N no-op jobs added by concurrent adders while one Worker in a child process completes them.
async function endToEnd() {
  const jobs = count('jobs', 20000);
  const adders = count('adders', 16);
  const concurrency = count('concurrency', 50);
  const queue = new Queue(queueName, { connection });
  await queue.waitUntilReady();
  const worker = fork(new URL(import.meta.url).pathname, [
    ...process.argv.slice(2),
    '--role',
    'worker',
    '--queue',
    queueName,
  ]);
  const message = (type) =>
    new Promise((resolve, reject) => {
      const onMessage = (m) => {
        if (m.type === type) {
          worker.off('message', onMessage);
          resolve(m);
        } else if (m.type === 'error') {
          reject(new Error(`worker: ${m.message}`));
        }
      };
      worker.on('message', onMessage);
      worker.once('exit', (code) => reject(new Error(`worker exited with ${code}`)));
    });
  await message('ready');
  const done = message('done');
  const started = performance.now();
  const adding = [];
  for (let n = 0; n < adders; n++) {
    const share = Math.floor(jobs / adders) + (n < jobs % adders ? 1 : 0);
    adding.push(
      (async () => {
        for (let i = 0; i < share; i++) {
          await queue.add('noop', { n: 1 });
        }
      })(),
    );
  }
  await Promise.all(adding);
  await done;
  const seconds = (performance.now() - started) / 1000;
  worker.send({ type: 'exit' });
  const result = {
    figure: 'e2e',
    jobs,
    adders,
    concurrency,
    worker_process: 'separate',
    seconds,
    jobs_per_second: jobs / seconds,
    ...(await environment(queue)),
  };
  await queue.close();
  return result;
}

// The child of `endToEnd`: one Worker that counts its completed jobs.
async function workerRole() {
  const jobs = count('jobs', 20000);
  const concurrency = count('concurrency', 50);
  let completed = 0;
  const worker = new Worker(queueName, async () => {}, { connection, concurrency });
  worker.on('completed', () => {
    completed += 1;
    if (completed === jobs) process.send({ type: 'done' });
  });
  worker.on('failed', (job, error) => process.send({ type: 'error', message: error.message }));
  worker.on('error', (error) => process.send({ type: 'error', message: error.message }));
  process.on('message', async (m) => {
    if (m.type === 'exit') {
      await worker.close();
      process.exit(0);
    }
  });
  await worker.waitUntilReady();
  process.send({ type: 'ready' });
}

// `add` sent → the processor of an idle Worker (concurrency 1) started on the job, in ms.
async function wake() {
  const samples = count('samples', 200);
  const queue = new Queue(queueName, { connection });
  let started = null;
  let completed = null;
  const worker = new Worker(
    queueName,
    async () => {
      started?.(performance.now());
    },
    { connection, concurrency: 1 },
  );
  worker.on('completed', () => completed?.());
  await Promise.all([queue.waitUntilReady(), worker.waitUntilReady()]);
  const latencies = [];
  for (let i = 0; i < samples; i++) {
    const processing = new Promise((resolve) => (started = resolve));
    const finished = new Promise((resolve) => (completed = resolve));
    // Let the worker reach its blocking wait on the empty queue before the job is added.
    await sleep(5);
    const sent = performance.now();
    const adding = queue.add('wake', { n: i });
    latencies.push((await processing) - sent);
    await adding;
    await finished;
  }
  latencies.sort((a, b) => a - b);
  const result = {
    figure: 'wake',
    samples,
    p50_ms: quantile(latencies, 0.5),
    p99_ms: quantile(latencies, 0.99),
    max_ms: latencies[latencies.length - 1] ?? 0,
    ...(await environment(queue)),
  };
  await worker.close();
  await queue.close();
  return result;
}

// Jobs added with addBulk, `batch` per call, from concurrent callers.
async function addBulk() {
  const jobs = count('jobs', 100000);
  const callers = count('callers', 2);
  const batch = count('batch', 1000);
  const queue = new Queue(queueName, { connection });
  await queue.waitUntilReady();
  const calls = Math.ceil(jobs / batch);
  const started = performance.now();
  const calling = [];
  for (let caller = 0; caller < callers; caller++) {
    calling.push(
      (async () => {
        for (let call = caller; call < calls; call += callers) {
          const size = Math.min(batch, jobs - call * batch);
          const bulk = [];
          for (let n = 0; n < size; n++) {
            bulk.push({ name: 'noop', data: { n: call * batch + n } });
          }
          await queue.addBulk(bulk);
        }
      })(),
    );
  }
  await Promise.all(calling);
  const seconds = (performance.now() - started) / 1000;
  const result = {
    figure: 'add-bulk',
    jobs,
    callers,
    batch,
    seconds,
    jobs_per_second: jobs / seconds,
    ...(await environment(queue)),
  };
  await queue.close();
  return result;
}

async function main() {
  if (args.role === 'worker') {
    await workerRole();
    return;
  }
  const figures = { e2e: endToEnd, wake, 'add-bulk': addBulk };
  const figure = figures[args.figure];
  if (!figure) {
    throw new Error(`unknown --figure ${args.figure}; one of ${Object.keys(figures).join(', ')}`);
  }
  const giveUp = setTimeout(() => {
    console.error(`${args.figure} did not finish in ${GIVE_UP_MS / 60000} minutes`);
    process.exit(1);
  }, GIVE_UP_MS);
  const result = await figure();
  clearTimeout(giveUp);
  process.stdout.write(`${JSON.stringify(result)}\n`);
  process.exit(0);
}

main().catch((error) => {
  console.error(error?.stack ?? String(error));
  if (process.send) process.send({ type: 'error', message: String(error) });
  process.exit(1);
});
