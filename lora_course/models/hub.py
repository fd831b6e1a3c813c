"""Is the Hugging Face hub reachable? Asked once per process, quickly.

Without this check an offline machine spends about half a minute in huggingface_hub's
retries before every fallback; a plain TCP connect answers in milliseconds.
"""

import functools
import os
import socket
from urllib.parse import urlparse


def hub_offline_requested() -> bool:
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes") for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


@functools.lru_cache(maxsize=1)
def hub_reachable(timeout: float = 3.0) -> bool:
    if hub_offline_requested():
        return False
    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False
