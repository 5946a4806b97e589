"""Whether the Hugging Face Hub can be reached: decided once per process, quickly.

Without it, every Hub request of a machine with no network is retried by huggingface_hub with
backoff (1 + 2 + 4 + 8 + 8 s, a warning line each), once per file and per model: `runner validate`
of a three-model spec took minutes to say what one look could. Instead, the first time a Hub id is
met, one HEAD request to the Hub's endpoint (`HF_ENDPOINT`, default https://huggingface.co) is
allowed `PROBE_SECONDS`; when it gets no answer, every later load in the process uses the local
Hugging Face cache only (`local_files_only`), so a cached model still loads and an uncached one
fails at once, and the reason is said once in each model's message. `HF_HUB_OFFLINE=1` decides it
with no request at all.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

PROBE_SECONDS = 1.5  # the whole probe (name lookup included: it runs in a thread that is not waited for longer)


@dataclass(frozen=True)
class HubStatus:
    online: bool
    endpoint: str
    why: str = ""  # when offline: HF_HUB_OFFLINE, or what the probe got
    seconds: float = 0.0

    def describe(self) -> str:
        if self.why == "HF_HUB_OFFLINE":
            return "offline mode is on (HF_HUB_OFFLINE/TRANSFORMERS_OFFLINE)"
        return f"the Hugging Face Hub ({self.endpoint}) could not be reached ({self.why}; checked once, {self.seconds:.1f} s)"


_status: HubStatus | None = None
_lock = threading.Lock()


def status() -> HubStatus:
    """The Hub's status for this process: probed on the first call, then remembered."""
    global _status
    from huggingface_hub import constants

    # HF_HUB_OFFLINE is read at each call (tests patch the constant): it needs no probe and wins over one
    if constants.HF_HUB_OFFLINE:
        return HubStatus(False, constants.ENDPOINT, "HF_HUB_OFFLINE")
    with _lock:
        if _status is None:
            _status = _probe(constants.ENDPOINT)
        return _status


def known() -> HubStatus | None:
    """The status if it has been decided (or HF_HUB_OFFLINE decides it), without probing."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return HubStatus(False, constants.ENDPOINT, "HF_HUB_OFFLINE")
    return _status


def forget() -> None:
    """Decide again at the next `status()` (for a long-lived process whose network changed, and tests)."""
    global _status
    with _lock:
        _status = None


def _probe(endpoint: str) -> HubStatus:
    from huggingface_hub.utils import get_session

    result: list = []

    def head() -> None:
        try:
            # huggingface_hub's own client: its proxies, certificates and headers, and no retries
            response = get_session().head(endpoint, timeout=PROBE_SECONDS, follow_redirects=False)
            result.append(response.status_code)
        except Exception as e:  # httpx2's ConnectError, a timeout, an SSL error: all mean "not reachable"
            result.append(e)

    start = time.monotonic()
    thread = threading.Thread(target=head, name="runner-hub-probe", daemon=True)
    thread.start()
    thread.join(PROBE_SECONDS + 0.3)  # a name lookup that hangs is not covered by the request's timeout
    seconds = time.monotonic() - start
    if not result:
        return HubStatus(False, endpoint, f"no answer within {PROBE_SECONDS:g} s", seconds)
    got = result[0]
    if isinstance(got, Exception):
        text = str(got).strip().splitlines()[0] if str(got).strip() else ""
        return HubStatus(False, endpoint, f"{type(got).__name__}: {text}" if text else type(got).__name__, seconds)
    if got >= 500:  # the Hub is down: every request would be retried, so treat it as unreachable
        return HubStatus(False, endpoint, f"it answered HTTP {got}", seconds)
    return HubStatus(True, endpoint, "", seconds)
