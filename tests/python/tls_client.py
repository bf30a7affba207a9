"""Creates, activates and completes one job over TLS with a stock grpcio channel.

Usage: tls_client.py ADDRESS CA_CERT_FILE
Reads the API key from JOBHOST_API_KEY; prints "completed KEY" and exits 0 on success.
"""

import os
import sys

import grpc

import jobs_pb2
import jobs_pb2_grpc


def main():
    address, ca_file = sys.argv[1], sys.argv[2]
    with open(ca_file, "rb") as f:
        credentials = grpc.ssl_channel_credentials(root_certificates=f.read())
    metadata = [("x-api-key", os.environ["JOBHOST_API_KEY"])]
    with grpc.secure_channel(address, credentials) as channel:
        stub = jobs_pb2_grpc.JobsServiceStub(channel)
        created = stub.CreateJob(
            jobs_pb2.CreateJobRequest(type="python-tls", variables="{}"),
            metadata=metadata,
            timeout=30,
        )
        request = jobs_pb2.ActivateJobsRequest(
            type="python-tls", worker="python-tls", max_jobs_to_activate=1, request_timeout=5000
        )
        jobs = [
            job
            for response in stub.ActivateJobs(request, metadata=metadata, timeout=30)
            for job in response.jobs
        ]
        if len(jobs) != 1:
            print(f"expected one activated job, got {len(jobs)}", file=sys.stderr)
            return 1
        stub.CompleteJob(
            jobs_pb2.CompleteJobRequest(job_key=jobs[0].job_key), metadata=metadata, timeout=30
        )
        print(f"completed {created.job_key}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
