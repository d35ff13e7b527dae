"""Google clients created lazily on first use and cached for the life of the process.

Cold start matters in Cloud Functions, so nothing here connects at import (python-docs-samples
``tips-lazy-globals``); ``warm_in_background`` builds them on a thread right after import instead. Each client honours the emulator variables (``FIRESTORE_EMULATOR_HOST``,
``PUBSUB_EMULATOR_HOST``, ``STORAGE_EMULATOR_HOST``) by itself. ``reset()`` forgets every cached client and
the cached settings (tests change the environment between cases).
"""

from __future__ import annotations

import functools
import threading

from vigint import config

# One client is built at a time: the warm-up thread and a first request must not import the same Google
# module concurrently (seen: "partially initialized module 'google.cloud.pubsub_v1'" on a cold instance).
_build = threading.RLock()


def _one_at_a_time(builder):
    cached = functools.lru_cache(maxsize=1)(builder)

    @functools.wraps(builder)
    def get():
        with _build:
            return cached()

    get.cache_clear = cached.cache_clear
    return get


@_one_at_a_time
def firestore():
    """The Firestore client (``google.cloud.firestore.Client``) for ``GOOGLE_CLOUD_PROJECT``."""
    from google.cloud import firestore as fs

    return fs.Client(project=config.settings().project)


@_one_at_a_time
def storage():
    """The Cloud Storage client; anonymous against fake-gcs-server, default credentials otherwise."""
    from google.cloud import storage as gcs

    s = config.settings()
    if s.storage_emulator_host:
        from google.auth.credentials import AnonymousCredentials

        return gcs.Client(project=s.project, credentials=AnonymousCredentials())
    return gcs.Client(project=s.project)


@_one_at_a_time
def publisher():
    """The Pub/Sub ``PublisherClient``."""
    from google.cloud import pubsub_v1

    return pubsub_v1.PublisherClient()


@_one_at_a_time
def gemini():
    """The ``vigint.gemini.GeminiAnalyzer`` for ``GEMINI_API_KEY`` (None when no key is configured)."""
    s = config.settings()
    if s.gemini_api_key is None:
        return None
    from vigint.gemini import GeminiAnalyzer

    return GeminiAnalyzer.create(s.gemini_api_key.get_secret_value(), s.gemini_model, s.gemini_base_url)


def warm_in_background() -> None:
    """Builds the Firestore, Pub/Sub and Storage clients (and the URL signer) on a daemon thread, so the first
    request does not pay for them (measured here: the Pub/Sub client alone 0.7 s, Storage 0.2 s, more on a
    loaded machine; together the first alert of a fresh instance took about 3 s longer). Import itself still
    connects to nothing and returns at once; a failure here is only logged (the first use tries again)."""
    import logging
    import threading

    def run() -> None:
        try:
            firestore()
            publisher()
            storage()
            from vigint import storage as vstorage

            with _build:
                vstorage.prepare_signer()
        except Exception as exc:  # noqa: BLE001 - the request that needs the client will say what is wrong
            logging.getLogger(__name__).info("clients: warm-up did not finish: %s", type(exc).__name__)

    threading.Thread(target=run, name="clients-warm-up", daemon=True).start()


def reset() -> None:
    """Forgets the cached clients and settings; the next call builds them from the current environment."""
    for cached in (firestore, storage, publisher, gemini):
        cached.cache_clear()
    config.settings.cache_clear()
    from vigint import storage as vstorage

    vstorage.reset_signer()
