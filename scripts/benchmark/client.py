"""HTTP helpers of the benchmark: where the stack listens, one-off calls, keep-alive clients."""
from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Endpoints:
    """Base URLs of the stack under test (all on 127.0.0.1)."""
    gateway: str
    products: str          # the product-service itself, for the gateway's overhead
    orders: str            # the order-service itself (listing the payment pool, GET /metrics)
    payment_metrics: str   # the payment-service's GET /metrics on its side port

    @classmethod
    def from_ports(cls, ports: dict[str, int]) -> "Endpoints":
        url = lambda key: f"http://127.0.0.1:{ports[key]}"  # noqa: E731
        return cls(url("gateway"), url("products"), url("orders"), f"{url('payments-metrics')}/metrics")


def decode(raw: bytes):
    try:
        return json.loads(raw or b"null")
    except ValueError:
        return raw.decode(errors="replace")


def call(method: str, url: str, body: dict | None = None, token: str | None = None,
         headers: dict | None = None, timeout: float = 10):
    """One request on a new connection: (status, decoded JSON body)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("content-type", "application/json")
    if token:
        request.add_header("authorization", f"Bearer {token}")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, decode(response.read())
    except urllib.error.HTTPError as error:
        return error.code, decode(error.read())


class Client:
    """A keep-alive HTTP/1.1 connection to one base URL, reopened after a transport error."""

    def __init__(self, base_url: str, timeout: float = 10):
        parsed = urllib.parse.urlsplit(base_url)
        self.host, self.port, self.timeout = parsed.hostname, parsed.port, timeout
        self.connection: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: dict | None = None, token: str | None = None,
                headers: dict | None = None):
        head = {"content-type": "application/json", **(headers or {})}
        if token:
            head["authorization"] = f"Bearer {token}"
        payload = json.dumps(body).encode() if body is not None else None
        reused = self.connection is not None
        if self.connection is None:
            self.connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            self.connection.request(method, path, body=payload, headers=head)
            response = self.connection.getresponse()
            return response.status, decode(response.read())
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            self.close()
            if not reused:
                raise
            # The server closed the idle kept-alive connection before this request reached it.
            return self.request(method, path, body, token, headers)
        except (OSError, http.client.HTTPException):
            self.close()
            raise

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None


def new_user(gateway: str, prefix: str) -> tuple[str, str, str]:
    """Registers a user; (email, password, token)."""
    name = f"{prefix}-{uuid.uuid4().hex[:10]}"
    email, password = f"{name}@example.com", "bench-password"
    status, body = call("POST", f"{gateway}/users/register", {"username": name, "email": email, "password": password},
                        timeout=60)
    if status != 201:
        raise SystemExit(f"bench: registering {email} answered {status}: {body}")
    status, body = call("POST", f"{gateway}/users/login", {"email": email, "password": password}, timeout=60)
    if status != 200:
        raise SystemExit(f"bench: logging in {email} answered {status}: {body}")
    return email, password, body["token"]


def wait_ready(url: str, timeout: float, alive: Callable[[], bool] = lambda: True) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            raise SystemExit("bench: the stack exited before it was ready")
        try:
            if call("GET", f"{url}/ready", timeout=3)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit("bench: the stack did not become ready")
