"""The one Redis lease: a key set if absent, holding a token, with a time to live.

Every "only one worker does this" claim that the database cannot decide is one of these: the
one-shot job of an experiment, a finalize, a package job, the watch chain of an experiment. A
holder that dies stops extending its lease, the key expires, and the next message takes over.
Only the holder of the token may extend or drop the key (compare-and-set scripts), so a worker
whose lease expired and was taken by another never deletes the new holder's key.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from functools import lru_cache

import redis
from django.conf import settings

log = logging.getLogger(__name__)

_EXTEND_IF_OWNER = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('expire', KEYS[1], ARGV[2]) end return 0"
_DELETE_IF_OWNER = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


@lru_cache(maxsize=1)
def redis_client() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL)


def key(name: str, object_id: int) -> str:
    # Namespaced like the broker's queues, so installations (and test sessions) sharing one
    # Redis server do not see each other's locks.
    return f"{settings.DRAMATIQ_BROKER['OPTIONS']['namespace']}:{name}:{object_id}"


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.current_thread().name}"


class RedisLease:
    def __init__(self, key: str, token: str, ttl_s: int):
        self.key = key
        self.token = token
        self.ttl_s = int(ttl_s)

    @classmethod
    def claim(cls, key: str, ttl_s: int, token: str | None = None) -> RedisLease | None:
        """The lease, or None while someone else holds it (a duplicate message)."""
        lease = cls(key, token or f"{worker_name()}:{uuid.uuid4().hex}", ttl_s)
        return lease if lease.take() else None

    @staticmethod
    def is_held(key: str) -> bool:
        """Somebody holds the key (a worker runs the job it guards)."""
        return bool(redis_client().exists(key))

    def take(self) -> bool:
        return bool(redis_client().set(self.key, self.token, nx=True, ex=self.ttl_s))

    def held(self) -> bool:
        return redis_client().get(self.key) == self.token.encode()

    def extend(self) -> bool:
        """Another time to live; False when the lease is no longer ours (expired, or taken)."""
        return bool(redis_client().eval(_EXTEND_IF_OWNER, 1, self.key, self.token, self.ttl_s))

    def release(self) -> None:
        try:
            redis_client().eval(_DELETE_IF_OWNER, 1, self.key, self.token)
        except redis.RedisError:  # the key expires by itself
            log.warning("could not release %s", self.key, exc_info=True)
