"""
An Airflow DAG that runs one kinesis-loader load per DAG run, with the HTTP
provider's operators only (apache-airflow-providers-http 4.8 or newer, for
HttpOperator): start the load, wait for the job, hand its row counts on.
What it is not: a way to run the loader itself; the service must be up
(README.md, "Airflow").

    start_load   POST /streams/{stream}/loads, Idempotency-Key: the run's id
                 (with the DAG's and the task's) -> the job id in XCom. A
                 retried task posts the same key and gets the same job back
                 (200) instead of a second job or a 409.
    wait_for_job GET /jobs/{id}?wait=30 in mode="reschedule": each poke is one
                 request the service answers when the job ends or after 30 s.
                 succeeded -> done; failed or cancelled -> the task fails with
                 the job's error; queued or running -> poke again.
    row_counts   GET /jobs/{id} -> last_normalize_info.row_counts in XCom.

The connection (KINESIS_LOADER_CONN_ID, default "kinesis_loader") is an HTTP
connection to the service: host, port, schema http or https, and as its
password the API token when the service has KL_API_TOKEN set (sent as
Authorization: Bearer; ignored by a service without one).

tests/integration/test_airflow_dag.c runs this exact sequence of requests
against a real service, with job_done's rules as its assertions: change one,
change the other.
"""

from __future__ import annotations

import os
from datetime import timedelta

import pendulum
from airflow import DAG
from airflow.exceptions import AirflowFailException
from airflow.providers.http.operators.http import HttpOperator
from airflow.providers.http.sensors.http import HttpSensor

CONN_ID = os.environ.get("KINESIS_LOADER_CONN_ID", "kinesis_loader")
# Seconds one poke waits for the job (the service allows 0 to 60); below the
# request timeout, so a poke ends with the service's answer.
WAIT_S = 30
REQUEST_TIMEOUT_S = WAIT_S + 30

HEADERS = {
    "Content-Type": "application/json",
    "Authorization": "Bearer {{ conn.get('%s').password or '' }}" % CONN_ID,
}
JOB_ENDPOINT = "jobs/{{ ti.xcom_pull(task_ids='start_load') }}"
# The service keeps a key for 24 h across every stream and pipeline, and
# run_id alone ("scheduled__2024-05-01T00:00:00+00:00") is the same in every
# DAG on the same schedule: with the DAG and task ids a key names one load of
# one run. Retries keep it. At most 255 characters.
IDEMPOTENCY_KEY = "{{ dag.dag_id }}.{{ task.task_id }}.{{ run_id }}"


def job_id(response):
    """The Job document of POST /streams/{stream}/loads (202, or 200 for a
    repeated Idempotency-Key) -> its id, for XCom."""
    return response.json()["id"]


def job_done(response):
    """The sensor's check of a Job document: True once it succeeded; raises
    for a job that failed or was cancelled (it will not change again, so the
    sensor fails at once, without retries); False while queued or running."""
    job = response.json()
    status = job["status"]
    if status == "succeeded":
        return True
    if status in ("failed", "cancelled"):
        error = job.get("error") or {}
        raise AirflowFailException(
            "kinesis-loader job %s %s: %s: %s"
            % (job["id"], status, error.get("type", "-"), error.get("detail", "-"))
        )
    return False


def row_counts(response):
    """A succeeded job's rows per table, as dlt reports them."""
    return response.json()["last_normalize_info"]["row_counts"]


with DAG(
    dag_id="kinesis_load",
    description="Load a Kinesis stream into PostgreSQL with kinesis-loader",
    schedule="@hourly",
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    # one job per stream and pipeline may be active; a second run would get 409
    max_active_runs=1,
    default_args={"retries": 3, "retry_delay": timedelta(minutes=1)},
    params={
        "stream": "orders",
        # the body of POST /streams/{stream}/loads (openapi.yaml, LoadRequest)
        "load": {"dataset_name": "raw", "pipeline_name": "orders_pipeline"},
    },
    tags=["kinesis-loader"],
) as dag:
    start_load = HttpOperator(
        task_id="start_load",
        http_conn_id=CONN_ID,
        method="POST",
        endpoint="streams/{{ params.stream }}/loads",
        headers={**HEADERS, "Idempotency-Key": IDEMPOTENCY_KEY},
        data="{{ params.load | tojson }}",
        response_filter=job_id,
        extra_options={"timeout": REQUEST_TIMEOUT_S},
    )

    wait_for_job = HttpSensor(
        task_id="wait_for_job",
        http_conn_id=CONN_ID,
        method="GET",
        endpoint=JOB_ENDPOINT,
        request_params={"wait": str(WAIT_S)},
        headers=HEADERS,
        response_check=job_done,
        # 503 (the state store reconnecting, the service restarting): poke
        # again; 404 (the job is gone) fails the task
        response_error_codes_allowlist=["503"],
        extra_options={"timeout": REQUEST_TIMEOUT_S},
        mode="reschedule",
        poke_interval=WAIT_S,
        timeout=timedelta(hours=6).total_seconds(),
    )

    push_row_counts = HttpOperator(
        task_id="row_counts",
        http_conn_id=CONN_ID,
        method="GET",
        endpoint=JOB_ENDPOINT,
        headers=HEADERS,
        response_filter=row_counts,
        extra_options={"timeout": REQUEST_TIMEOUT_S},
    )

    start_load >> wait_for_job >> push_row_counts
