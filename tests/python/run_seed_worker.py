"""Runs the seed JobWorker until the given jobs reach their expected states.

Usage: run_seed_worker.py KEY=STATE [KEY=STATE ...]
Exits 0 once every job is in its state, 1 if that does not happen within 60 seconds.
"""

import os
import sys
import threading
import time

import grpc

import jobs_pb2
import jobs_pb2_grpc
from seed_worker import JobWorker


def main():
    expected = dict(arg.split("=", 1) for arg in sys.argv[1:])
    worker = JobWorker("python-worker", "http-request")
    threading.Thread(target=worker.start, daemon=True).start()

    channel = grpc.insecure_channel(os.environ["JOBHOST_GRPC_ADDR"])
    stub = jobs_pb2_grpc.JobsServiceStub(channel)
    metadata = [("x-api-key", os.environ["JOBHOST_API_KEY"])]
    deadline = time.time() + 60
    states = {}
    while time.time() < deadline:
        for key in expected:
            job = stub.GetJob(jobs_pb2.GetJobRequest(job_key=key), metadata=metadata).job
            states[key] = job.state
        if states == expected:
            print(f"all jobs reached their states: {states}")
            return 0
        time.sleep(0.2)
    print(f"jobs did not reach {expected}: {states}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
