"""The S3 store's clients and the way every request goes out: obstore for most, ``s3_http`` for small
objects from an event loop and for the parts of large downloads; errors translated (``s3_errors``),
transient ones retried by the store's ``RetryPolicy``."""

from __future__ import annotations

import os
from datetime import timedelta

from tiering.core.errors import CredentialsError
from tiering.stores.keys import join_key
from tiering.stores.options import S3_OPTIONS
from tiering.stores.s3_errors import Translated, classify, translate
from tiering.stores.s3_http import BlockingRanges, Response, S3Endpoint, S3Http
from tiering.stores.sigv4 import S3Credentials


class S3Client:
    """Mixin of ``S3Store``: the clients built from the tier's options, and ``_call``/``_request`` to use them."""

    def _client_config(self, options: dict) -> dict:
        env = os.environ
        key_id = options.get("access_key_id") or env.get("AWS_ACCESS_KEY_ID")
        secret = options.get("secret_access_key") or env.get("AWS_SECRET_ACCESS_KEY")
        if not key_id or not secret:
            raise CredentialsError(
                f"{self.url}: no credentials: set access_key_id/secret_access_key for the tier "
                "or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY in the environment",
                store=self.url,
            )
        endpoint = options.get("endpoint") or env.get("AWS_ENDPOINT_URL") or ""
        default_region = S3_OPTIONS.default("region")
        aws_region = options.get("region") or env.get("AWS_REGION")
        self._endpoint = endpoint or f"https://s3.{aws_region or default_region}.amazonaws.com"
        region = aws_region or env.get("AWS_DEFAULT_REGION") or default_region
        token = options.get("session_token") or env.get("AWS_SESSION_TOKEN")
        self._creds = S3Credentials(key_id, secret, token, region)
        config = {
            "access_key_id": key_id,
            "secret_access_key": secret,
            "region": region,
            "virtual_hosted_style_request": bool(options.get("virtual_hosted_style",
                                                             S3_OPTIONS.default("virtual_hosted_style"))),
        }
        if token:
            config["session_token"] = token
        if endpoint:
            config["endpoint"] = endpoint
        allow_http = bool(options.get("allow_http", endpoint.startswith("http://")))
        connect_timeout = float(options.get("connect_timeout", S3_OPTIONS.default("connect_timeout")))
        request_timeout = float(options.get("request_timeout", S3_OPTIONS.default("request_timeout")))
        client = {
            "allow_http": allow_http,
            "connect_timeout": timedelta(seconds=connect_timeout),
            "timeout": timedelta(seconds=request_timeout),
            "pool_max_idle_per_host": "256",
        }
        #: Small-object requests from an event loop, and the parts of large downloads read straight
        #: into aligned buffers (see ``s3_http`` for why); None where a proxy is configured for the
        #: endpoint, which only obstore honours.
        self._http = self._ranges = None
        if S3Endpoint.usable(self._endpoint, allow_http):
            where = S3Endpoint(self._endpoint, self.bucket, self._creds,
                               virtual_hosted=config["virtual_hosted_style_request"])
            self._http = S3Http(where, connect_timeout=connect_timeout, request_timeout=request_timeout)
            self._ranges = BlockingRanges(where, request_timeout=request_timeout)
        # Retries happen in RetryPolicy, once; the SDK's own are off.
        retry = {"max_retries": 0, "retry_timeout": timedelta(seconds=1)}
        return {"config": config, "client_options": client, "retry_config": retry}

    def _name(self, key: str) -> str:
        return join_key(self.prefix, key)

    def _call(self, key: str, fn, *, retry: bool = True):
        """``fn()`` with SDK errors translated, and transient ones retried unless ``retry`` is off."""
        def attempt():
            with Translated(self._error, key):
                return fn()

        return self.retry.call(attempt) if retry else attempt()

    async def _call_async(self, key: str, fn):
        """``_call`` for a coroutine function: the same translation (``Translated``) and retries."""
        async def attempt():
            with Translated(self._error, key):
                return await fn()

        return await self.retry.call_async(attempt)

    async def _request(self, key: str, method: str, **kwargs) -> Response:
        """One ``S3Http`` request for ``key``, retried by the policy; a status of 300 or more raises."""
        async def send() -> Response:
            response = await self._http.request(method, self._name(key), **kwargs)
            if response.status >= 300:
                raise classify(self.url, key, response.status, response.error_code())
            return response

        return await self._call_async(key, send)

    def _error(self, exc: Exception, key: str) -> Exception:
        """A local file error as it is (it is not the store's); anything else as the project's error."""
        if isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError) and exc.errno:
            return exc
        return translate(exc, self.url, key)
