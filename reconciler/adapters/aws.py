"""What the AWS adapters (ssm, aws-secrets) share: boto3 clients per region, endpoint and credentials, and
botocore's errors in reconciler's terms.

Connection options of every AWS target:
  region: eu-west-1                  # default RECONCILER_AWS__REGION, else the standard chain's
  endpoint_url: https://ssm.eu-west-1.amazonaws.com   # default RECONCILER_AWS__ENDPOINT_URL, else AWS's own
  access_key_id: AKIA...             # with secret_access_key: named credentials instead of the standard chain
  secret_access_key: aws-prod        # a credential name (RECONCILER_ADAPTERS__CREDENTIALS)
  session_token: aws-prod-session    # a credential name, for temporary credentials

Without access_key_id the standard chain of boto3 applies (environment, ~/.aws, the instance or task role,
web identity). boto3's own retries are off: reconciler retries reads once, around whole adapter calls.
"""

from __future__ import annotations

import threading
import urllib.parse
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import boto3.session
import botocore.config
import botocore.exceptions

from reconciler.adapters.common import Credentials, Options
from reconciler.errors import AccessDenied, ConflictError, ReconcilerError
from reconciler.settings import Settings

CONNECTION = ("region", "endpoint_url", "access_key_id", "secret_access_key", "session_token")

# Error codes that mean "these credentials may not do this": retrying will not help.
DENIED = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "ExpiredTokenException",
        "KMSAccessDeniedException",
    }
)
NOT_FOUND = frozenset({"ParameterNotFound", "ResourceNotFoundException", "ParameterVersionNotFound"})
EXISTS = frozenset({"ParameterAlreadyExists", "ResourceExistsException"})


@dataclass(frozen=True)
class Connection:
    """Where and as whom to call AWS. The secret parts are left out of repr, so that no log line shows them."""

    region: str | None
    endpoint_url: str | None
    access_key_id: str | None
    secret_access_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)


def connection(options: Options, credentials: Credentials, settings: Settings) -> Connection:
    """A target's connection options, checked; nothing is contacted."""
    region = options.text("region", settings.aws.region)
    endpoint = options.text("endpoint_url", settings.aws.endpoint_url)
    if endpoint is not None and urllib.parse.urlsplit(endpoint).scheme not in ("http", "https"):
        raise options.problem("endpoint_url", "must be an http:// or https:// URL")
    key_id = options.text("access_key_id", None)
    secret = credentials.get(options, "secret_access_key")
    token = credentials.get(options, "session_token")
    if (key_id is None) != (secret is None):
        raise options.problem("access_key_id", "give both access_key_id and secret_access_key, or neither")
    if token is not None and key_id is None:
        raise options.problem("session_token", "goes with access_key_id and secret_access_key")
    return Connection(region, endpoint, key_id, secret, token)


class Clients:
    """One boto3 client per service and connection, built on first use (clients are thread-safe)."""

    def __init__(self, settings: Settings) -> None:
        self._timeout = settings.adapters.timeout_s
        self._clients: dict[tuple[str, Connection], Any] = {}
        self._lock = threading.Lock()

    def get(self, service: str, where: Connection, options: Options) -> Any:
        key = (service, where)
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                session = boto3.session.Session(
                    aws_access_key_id=where.access_key_id,
                    aws_secret_access_key=where.secret_access_key,
                    aws_session_token=where.session_token,
                    region_name=where.region,
                )
                config = botocore.config.Config(
                    connect_timeout=self._timeout,
                    read_timeout=self._timeout,
                    retries={"total_max_attempts": 1},
                )
                try:
                    client = session.client(service, endpoint_url=where.endpoint_url, config=config)
                except botocore.exceptions.NoRegionError:
                    raise options.problem(
                        "region", "no AWS region: name one here, or set RECONCILER_AWS__REGION or AWS_REGION"
                    ) from None
                self._clients[key] = client
            return client


@contextmanager
def errors(
    where: str,
    error: type[ReconcilerError],
    credentials: Credentials,
    hide: Sequence[str] = (),
    conflicts: Collection[str] = (),
) -> Iterator[None]:
    """botocore's exceptions as reconciler's, naming `where`; never a credential, nor any of the values in
    `hide` (what is being written, which may be secret). The error codes in `conflicts` are a ConflictError:
    for a call whose guard is the server's own (a stage moved only from the version that holds it)."""
    try:
        yield
    except botocore.exceptions.ClientError as exc:
        info = exc.response.get("Error", {})
        code = str(info.get("Code", "Unknown"))
        message = _scrub(str(info.get("Message", "")), credentials, hide)
        if code in DENIED:
            raise AccessDenied(f"{where}: AWS refused the request ({code}): {message}") from None
        if code in NOT_FOUND:
            raise error(f"{where}: not found ({code}): {message}") from None
        if code in conflicts:
            raise ConflictError(f"{where}: another writer got in between ({code}): {message}") from None
        if code in EXISTS:
            raise ConflictError(f"{where}: created by another writer since it was read ({code})") from None
        raise error(f"{where}: AWS answered {code}: {message}") from None
    except botocore.exceptions.NoCredentialsError:
        raise AccessDenied(
            f"{where}: no AWS credentials: the standard chain found none; name access_key_id and "
            "secret_access_key, or give the process a role"
        ) from None
    except botocore.exceptions.BotoCoreError as exc:  # unreachable endpoint, timeouts, broken responses
        raise error(f"{where}: cannot reach AWS: {_scrub(str(exc), credentials, hide)}") from None


def _scrub(text: str, credentials: Credentials, hide: Sequence[str]) -> str:
    for value in hide:
        if value:
            text = text.replace(value, "<redacted>")
    return credentials.scrub(text)
