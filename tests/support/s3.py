"""A real S3 protocol on loopback: moto's server, with a fresh bucket per test.

`S3Server` runs moto's threaded server on a free port; `bucket()` creates a bucket with a unique
name and returns its `s3://` URL. `env` holds the AWS variables a process needs to reach it
(the credentials moto accepts, the region and the endpoint).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from typing import Any, Self

import pytest

from tests.support.loopback import HOST, free_port

ACCESS_KEY = "test"
SECRET_KEY = "test"
REGION = "us-east-1"

_names = itertools.count()


class S3Server:
    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self.port = free_port()
        self._server = ThreadedMotoServer(ip_address=HOST, port=self.port, verbose=False)

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """What a process needs in its environment to use this server."""
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": REGION,
            "AWS_ENDPOINT_URL": self.endpoint,
        }

    def client(self) -> Any:
        """A boto3 S3 client for this server (to check what the code under test wrote)."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name=REGION,
        )

    def bucket(self, prefix: str = "") -> str:
        """A new empty bucket; its `s3://` URL (with `prefix` appended when given)."""
        name = f"bucket-{os.getpid()}-{next(_names)}"
        self.client().create_bucket(Bucket=name)
        return f"s3://{name}" + (f"/{prefix.strip('/')}" if prefix else "")

    def keys(self, url: str) -> list[str]:
        """Every key in the bucket of `url`, listed with boto3 (independently of our code)."""
        bucket = url.removeprefix("s3://").split("/", 1)[0]
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return sorted(item["Key"] for page in pages for item in page.get("Contents", []))

    def start(self) -> Self:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """moto's S3 server on loopback, shared by the session (each test takes its own bucket)."""
    with S3Server() as server:
        yield server
