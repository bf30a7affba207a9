// A jobhost job handler written in JavaScript.
//
// Each attempt GETs the URL in the job's variables with the tenant's secret API_TOKEN as a
// bearer token, counts the call in the key-value bucket "counters", and completes with the
// answer, the token's length (never the token) and the count. Deploy it with the grants it
// uses, e.g. `--allow-http https://api.example.com --secret API_TOKEN --kv counters`.
//
// The imports below are the WIT interfaces of the handler's world; componentize-js turns
// their functions into plain JavaScript ones that return the `ok` value of a WIT `result`
// and throw an error whose `payload` is its `err` value.

import { log } from 'jobhost:plugin/host@0.2.0';
import { get as getConfig } from 'wasi:config/store@0.2.0-rc.1';
import { open } from 'wasi:keyvalue/store@0.2.0-draft2';
import { increment } from 'wasi:keyvalue/atomics@0.2.0-draft2';

/** Handles one attempt of one job; jobhost calls it with the job and awaits the outcome. */
export async function handle(job) {
  try {
    return { tag: 'complete', val: JSON.stringify(await greet(JSON.parse(job.variables))) };
  } catch (error) {
    // A host call refused or failed (e.g. a URL outside the grants): the handler's retry
    // policy decides when to try again.
    return { tag: 'fail', val: { message: describe(error), retryable: true } };
  }
}

async function greet({ url }) {
  // Granted with --secret API_TOKEN; undefined if the secret is not set.
  const token = getConfig('API_TOKEN');
  if (token === undefined) {
    throw new Error('the secret API_TOKEN is not set');
  }
  // fetch() goes out through wasi:http, within the handler's --allow-http grants.
  const response = await fetch(url, { headers: { authorization: `Bearer ${token}` } });
  const answer = await response.text();
  // Granted with --kv counters; the increment is atomic and durable when it returns.
  const runs = increment(open('counters'), 'runs', 1n);
  log('info', `GET ${url} -> ${response.status}, run ${runs}`);
  return {
    status: response.status,
    answer,
    token_length: token.length,
    // WIT s64 values are BigInts in JavaScript; JSON has no BigInt.
    runs: Number(runs),
  };
}

/** A readable message for a failed host call or fetch. */
function describe(error) {
  // The `err` of a WIT result (e.g. `{ tag: 'no-such-store' }`) comes as the error's payload.
  return error.payload !== undefined ? JSON.stringify(error.payload) : String(error);
}
