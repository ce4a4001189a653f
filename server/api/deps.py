"""What route handlers depend on: the store and the write token check.

Invariant: a write endpoint runs only with the configured token, compared in constant
time; with no token configured every write is refused.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ..store.rows import Store

_bearer = HTTPBearer(auto_error=False, description="API token for write endpoints")


def get_store(request: Request) -> Store:
    return request.app.state.store


def require_token(request: Request, credentials: Annotated[
        HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
    token = request.app.state.token
    if not token:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "writes are disabled: no API token set")
    if credentials is None or not hmac.compare_digest(credentials.credentials.encode(),
                                                      token.encode()):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "API token missing or wrong",
                            headers={"WWW-Authenticate": "Bearer"})
