"""The server's live state: the loaded version (swapped atomically), the batcher, the alias follower and
the bearer-token check.

Following the alias: every `poll_s` (and on `POST /admin/reload`) the reference is resolved again; when it
names another version, that version is loaded in a worker thread while the current one keeps serving,
then `current` is replaced in one assignment. Requests already queued carry the predictor they were
validated against and finish on it (api/serving/batcher.py), so no request fails across a swap; the old
model is freed when its last job is done.

Auth follows the admin API's rules (api/auth.py): a presented token must be live, a route needs scope
`read` (inference, /metrics; open without a token when SHRINKWRAP_API_OPEN_READS=true) or `admin`
(/admin/reload). Inference changes no state, so it is a read. A checked token is trusted for
`token_cache_s` (default 10 s) without a database round trip: a revocation takes effect within that.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time

from starlette.concurrency import run_in_threadpool

from api.auth import MAX_TOKEN_CHARS, authorize
from api.serving.batcher import Batcher
from api.serving.loader import Loaded, ModelRef, load_version, resolve
from api.serving.metrics import ServingMetrics
from api.serving.settings import ServeSettings
from registry.repository.tokens import TokenGrant, last_used_due, lookup_token, stamp_token_used
from registry.session import make_engine, session_scope
from registry.store import ArtifactStore

log = logging.getLogger("shrinkwrap.serving")


class ServerState:
    def __init__(self, settings: ServeSettings):
        self.settings = settings
        self.ref = ModelRef.parse(settings.model)
        self.engine = make_engine(settings.api.database_url)
        self.store = ArtifactStore(settings.api.artifact_root)
        self.metrics = ServingMetrics()
        self.batcher = Batcher(max_batch=settings.max_batch, max_wait_s=settings.max_wait_ms / 1000,
                               max_queue=settings.max_queue, metrics=self.metrics)
        self.current: Loaded | None = None
        self.load_error: str | None = None
        self._reload_lock = asyncio.Lock()
        self._tokens: dict[str, tuple[TokenGrant | None, float]] = {}
        self._tasks: list[asyncio.Task] = []

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        self.batcher.start()
        self._tasks.append(asyncio.create_task(self._follow(), name="shrinkwrap-alias-follower"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.batcher.stop()
        self.engine.dispose()

    async def _follow(self) -> None:
        """Load the first version at once, then look the reference up every `poll_s` (pinned versions and
        poll_s=0: only until the first load succeeds)."""
        while True:
            try:
                await self.reload()
            except Exception as err:  # noqa: BLE001 - keep serving the current version
                self.load_error = f"{type(err).__name__}: {err}"
                log.error("could not load %s: %s", self.ref, self.load_error)
            following = self.ref.alias is not None and self.settings.poll_s > 0
            if self.current is not None and not following:
                return
            await asyncio.sleep(self.settings.poll_s or 5.0)

    async def reload(self, *, force: bool = False) -> bool:
        """Resolve the reference again; load and swap in its version when it changed (or `force`).
        Returns whether a new version went live."""
        async with self._reload_lock:
            resolved = await run_in_threadpool(resolve, self.engine, self.ref)
            if self.current is not None and self.current.resolved == resolved and not force:
                return False
            loaded = await run_in_threadpool(load_version, self.engine, self.store, resolved,
                                             compile=self.settings.compile)
            previous, self.current, self.load_error = self.current, loaded, None
            self.metrics.reloads += previous is not None
            if previous is not None:
                log.info("%s moved from version %d to %d", self.ref, previous.resolved.version, resolved.version)
            return True

    # -- auth -----------------------------------------------------------------------------------
    async def authorize(self, authorization: str | None, scope: str) -> None:
        """Raise the admin API's 401/403 unless the `Authorization` header grants `scope`."""
        token = None
        if authorization is not None:
            kind, _, value = authorization.partition(" ")
            token = value.strip() if kind.lower() == "bearer" and len(value.strip()) <= MAX_TOKEN_CHARS else ""
        grant = await self._grant(token) if token else None
        authorize(grant, token_sent=token is not None, scope=scope, open_reads=self.settings.api.open_reads)

    async def _grant(self, token: str) -> TokenGrant | None:
        key = hashlib.sha256(token.encode()).hexdigest()
        cached = self._tokens.get(key)
        now = time.monotonic()
        if cached is not None and cached[1] > now:
            return cached[0]
        grant = await run_in_threadpool(self._lookup, token)
        if len(self._tokens) > 10_000:
            self._tokens.clear()
        self._tokens[key] = (grant, now + self.settings.token_cache_s)
        return grant

    def _lookup(self, token: str) -> TokenGrant | None:
        with session_scope(self.engine, readonly=True) as session:
            grant = lookup_token(session, token=token)
        if grant is not None and last_used_due(grant):
            with session_scope(self.engine) as session:
                stamp_token_used(session, token_id=grant.id)
        return grant
