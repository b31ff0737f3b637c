"""Kerberos (SPNEGO) for the Airflow 3 REST API, beside the login of people. Runs inside the api-server.

Airflow 3's REST API (FastAPI) accepts only its own JWTs (an `Authorization: Bearer` header or the UI's
cookie). The FAB provider's `kerberos_auth` backend still exists, but `[fab] auth_backends` only decorate the
Flask views of Airflow 2's API, which Airflow 3 no longer has: configured, it is loaded and never called. So
this plugin adds a root middleware: a request with `Authorization: Negotiate <token>` is accepted with the
api-server's HTTP service keytab (`KRB5_KTNAME`), the client principal is mapped to the FAB user of the same
name (`jdoe@REALM` -> `jdoe` in the instance's own realm, otherwise the full principal), and the request goes
on with a JWT of that user that lives a minute and never leaves the process. Airflow's own permission checks
then apply as for any other caller. Every 401 carries `WWW-Authenticate: Negotiate`, the challenge Kerberos
clients (curl --negotiate, requests-gssapi) wait for before they send a token.

Written by airflow-platform (components/airflow_plugins/kerberos_api.py); it needs `pykerberos` in the image,
which Airflow's `kerberos` extra installs.
"""

from __future__ import annotations

import logging

from airflow.plugins_manager import AirflowPlugin

log = logging.getLogger(__name__)

TOKEN_SECONDS = 60


def _realm() -> str | None:
    from airflow.configuration import conf

    principal = conf.get("kerberos", "principal", fallback="") or ""
    return principal.rsplit("@", 1)[1] if "@" in principal else None


def username_for(principal: str, realm: str | None) -> str:
    name, _, principal_realm = principal.rpartition("@")
    return name if name and principal_realm == realm else principal


def accept(token: str) -> tuple[str, str | None] | None:
    """(client principal, mutual-authentication token) for a valid SPNEGO token, else None."""
    import kerberos

    state = None
    try:
        # An empty service name accepts a ticket for any principal in the keytab: the HTTP/ principals of
        # every name clients reach the api-server by (ingress host, Service name), and only those, are in it.
        result, state = kerberos.authGSSServerInit("")
        if result != kerberos.AUTH_GSS_COMPLETE:
            return None
        if kerberos.authGSSServerStep(state, token) != kerberos.AUTH_GSS_COMPLETE:
            return None
        return kerberos.authGSSServerUserName(state), kerberos.authGSSServerResponse(state)
    except kerberos.GSSError as error:
        log.info("SPNEGO token refused: %s", error)
        return None
    finally:
        if state is not None:
            kerberos.authGSSServerClean(state)


def token_for(username: str) -> str | None:
    """A short-lived JWT for the active FAB user `username`, or None if there is none."""
    from sqlalchemy import select

    from airflow.api_fastapi.app import get_auth_manager
    from airflow.providers.fab.auth_manager.models import User
    from airflow.utils.session import create_session

    with create_session() as session:
        user = session.scalars(select(User).where(User.username == username)).one_or_none()
        if user is None or not user.is_active:
            return None
        return get_auth_manager().generate_jwt(user, expiration_time_in_seconds=TOKEN_SECONDS)


async def _respond(send, status: int, text: str, headers: list[tuple[bytes, bytes]] = ()) -> None:
    body = text.encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode()), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})


class SpnegoMiddleware:
    def __init__(self, app):
        self.app = app
        self.realm = _realm()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        header = next((value for key, value in scope["headers"] if key == b"authorization"), b"")
        scheme, _, token = header.decode("latin-1").partition(" ")
        if scheme.lower() != "negotiate":
            return await self.app(scope, receive, self._challenging(send, None))

        from starlette.concurrency import run_in_threadpool

        accepted = await run_in_threadpool(accept, token.strip())
        if accepted is None:
            return await _respond(send, 401, "Kerberos authentication failed", [(b"www-authenticate", b"Negotiate")])
        principal, mutual = accepted
        username = username_for(principal, self.realm)
        jwt = await run_in_threadpool(token_for, username)
        if jwt is None:
            log.info("Kerberos principal %s has no active Airflow user %s", principal, username)
            return await _respond(send, 403, f"Kerberos principal {principal} has no active Airflow user {username}")
        headers = [(k, v) for k, v in scope["headers"] if k != b"authorization"]
        headers.append((b"authorization", f"Bearer {jwt}".encode()))
        await self.app({**scope, "headers": headers}, receive, self._challenging(send, mutual))

    @staticmethod
    def _challenging(send, mutual: str | None):
        async def wrapped(message):
            if message["type"] == "http.response.start":
                value = f"Negotiate {mutual}" if mutual else ("Negotiate" if message["status"] == 401 else None)
                if value:
                    message = {**message, "headers": [*message.get("headers", []), (b"www-authenticate", value.encode())]}
            await send(message)

        return wrapped


class KerberosApiPlugin(AirflowPlugin):
    name = "airflow_platform_kerberos_api"
    fastapi_root_middlewares = [{"middleware": SpnegoMiddleware, "args": [], "kwargs": {}, "name": "kerberos-spnego"}]
