"""Known-good requests for schemathesis, so every operation's success answer is checked too.

Random data alone reaches only the refusals of the routes that act on something that must exist:
a rollout, a job held by a device, a credential, a firmware file on the engine's disk, a download
token. Left alone, schemathesis checks their 4xx answers against the schema and never their 200s
(it warns, and passes). This module is its hooks module (`SCHEMATHESIS_HOOKS=known_good`): for
those operations it turns the first and then every third *positive* case of each phase into a
request that must succeed, made from things it first creates on the engine under test through the
same APIs (a draft rollout, a compatibility device holding a job, ...). The other cases stay as
generated. `run.sh` then checks, in the HAR report, that every operation answered a 2xx at least
once.

Environment: FLOTILLA_ADMIN, FLOTILLA_TOKEN (the admin API), FLOTILLA_DEVICE (the device server),
FLOTILLA_FW (an image file on the engine's disk, of model `st-fixture`, already imported).
"""

from __future__ import annotations

import collections
import functools
import hashlib
import itertools
import json
import os
import sys
import time
import urllib.error
import urllib.request

import schemathesis
from schemathesis.generation import GenerationMode

ADMIN = os.environ.get("FLOTILLA_ADMIN", "")
TOKEN = os.environ.get("FLOTILLA_TOKEN", "")
DEVICE = os.environ.get("FLOTILLA_DEVICE", "")
FW = os.environ.get("FLOTILLA_FW", "")

MODEL = "st-fixture"
# A compatibility-profile device (`/api/ota/check`): reports from it count once it holds a job.
COMPAT = {"device_id": "st-compat", "mac": "02:5c:00:00:00:03", "version": "1.0.0", "model": MODEL, "chip": "esp32"}
EVERY = 3


def call(method: str, url: str, body=None, admin: bool = True):
    """One request; (status, parsed JSON or None). Never raises on an HTTP error status."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if body is not None:
        req.add_header("Content-Type", "application/json")
    if admin:
        req.add_header("Authorization", f"Bearer {TOKEN}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            raw = resp.read()
            status = resp.status
    except urllib.error.HTTPError as err:
        raw = err.read()
        status = err.code
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, None


def expect(status_body, *ok):
    status, body = status_body
    if status not in ok:
        raise RuntimeError(f"setting up a known-good request: {status} {body}")
    return body


@functools.cache
def image() -> bytes:
    with open(FW, "rb") as f:
        return f.read()


# By sha256 prefix: the fuzzer's demo fleet may import another model's firmware of the same version.
FIRMWARE = hashlib.sha256(image()).hexdigest()[:16] if FW else ""


def ensure_firmware() -> None:
    """The fixture firmware exists and can be rolled out (the fuzzer may block, archive or delete it)."""
    status, _ = call("GET", f"{ADMIN}/api/v1/firmware/{FIRMWARE}")
    if status == 404:
        expect(call("POST", f"{ADMIN}/api/v1/firmware/import", {"path": FW}), 200, 201)
    patch = {"blocked": False, "archived": False, "channel": "stable", "min_version": ""}
    expect(call("PATCH", f"{ADMIN}/api/v1/firmware/{FIRMWARE}", patch), 200)


_spares = itertools.count(1)


def add_spare() -> str:
    """A new device added by hand (a fresh one each time: a rollout the fuzzer made for every
    device holds the earlier ones until its in-flight jobs time out)."""
    n = next(_spares)
    mac = f"02:5c:00:01:{n >> 8 & 0xff:02x}:{n & 0xff:02x}"  # never the compatibility device's
    spare = {"mac": mac, "family": "native", "model": MODEL, "chip": "esp32", "version": "1.0.0"}
    expect(call("POST", f"{ADMIN}/api/v1/devices", spare), 200)
    return mac


def draft() -> tuple[int, int]:
    """A new draft rollout for a new device: (rollout id, its job id)."""
    ensure_firmware()
    detail = expect(call("POST", f"{ADMIN}/api/v1/rollouts", {"firmware": FIRMWARE, "target": f"device:{add_spare()}"}), 201)
    jobs = [j for j in detail["jobs"] if j["state"] != "skipped"]
    if not jobs:
        raise RuntimeError(f"the draft has no job: {detail['jobs']}")
    return detail["rollout"]["id"], jobs[0]["id"]


_offer: dict | None = None


def compat_offer() -> dict:
    """The offer (job, download URL) the compatibility device holds, made anew when it is gone."""
    global _offer
    if _offer is not None:
        return _offer
    ensure_firmware()
    made = None
    deadline = time.monotonic() + 10
    while True:
        offer = expect(call("POST", f"{DEVICE}/api/ota/check", COMPAT, admin=False), 200)
        if offer.get("update_available") or time.monotonic() > deadline:
            break
        if made is None:
            spec = {"firmware": FIRMWARE, "target": f"device:{COMPAT['device_id']}", "start": True,
                    "waves": [{"count": 1}], "step_timeout_secs": 3600}
            made = expect(call("POST", f"{ADMIN}/api/v1/rollouts", spec), 201)
            continue
        # The rollout's loop commands the device on its next turn: ask until then (at most 10 s).
        time.sleep(0.1)
    if not offer.get("update_available"):
        jobs = made and [(j["state"], j["error"]) for j in made["jobs"]]
        raise RuntimeError(f"{COMPAT['device_id']} was given no offer ({offer}); its rollout's jobs: {jobs}")
    _offer = offer
    return offer


def forget_offer() -> None:
    global _offer
    _offer = None


def fw_file() -> tuple[str, str]:
    """(file, token) of the compatibility device's download URL."""
    url = compat_offer()["url"]
    path, _, query = url.partition("?")
    return path.rsplit("/", 1)[1], query.removeprefix("t=")


def _credential_put(case):
    case.path_parameters = {"scope": "tasmota"}
    case.body = {"username": "admin", "password": "known-good"}


def _credential_delete(case):
    expect(call("PUT", f"{ADMIN}/api/v1/credentials/shelly", {"password": "to-delete"}), 200)
    case.path_parameters = {"scope": "shelly"}


_formats = itertools.cycle(["json", "csv"])


def _rollout_get(case):
    rollout, _ = draft()
    case.path_parameters = {"id": rollout}
    if case.operation.path.endswith("/report"):
        case.query = {"format": next(_formats)}


def _rollout_action(case):
    rollout, _ = draft()
    case.path_parameters = {"id": rollout, "action": "cancel"}


def _skip(case):
    rollout, job = draft()
    case.path_parameters = {"id": rollout, "job": job}


def _rollout_body(case):
    ensure_firmware()
    case.body = {"firmware": FIRMWARE, "target": f"device:{add_spare()}"}


def _probe(case):
    # A real HTTP server that is no device: the engine's own admin listener.
    case.body = {"address": ADMIN.removeprefix("http://")}


def _suggestions(case):
    ensure_firmware()
    case.query = {"target": f"model:{MODEL}"}


def _download_link(case):
    ensure_firmware()
    case.path_parameters = {"ref": FIRMWARE}
    case.body = {"job": "known-good", "ttl_secs": 60}


def _upload(case):
    ensure_firmware()
    case.body = {"file": image()}


def _import(case):
    ensure_firmware()
    case.body = {"path": FW}


def _inspect(case):
    if case.media_type == "application/json":
        case.body = {"path": FW}
    else:
        case.body = image()
    case.query = {}


def _fw(case):
    ensure_firmware()
    file, token = fw_file()
    case.path_parameters = {"file": file}
    case.query = {"t": token}
    case.headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "range"}


def _report(case):
    body = {"job": compat_offer()["job"], "state": "downloading", "progress": 40}
    if case.operation.path == "/api/device/{id}/update-status":
        case.path_parameters = {"id": COMPAT["device_id"]}
    else:
        body["device_id"] = COMPAT["device_id"]
    case.body = body


# operation label -> how a case of it becomes a request that must succeed
REWRITES = {
    "PUT /api/v1/credentials/{scope}": _credential_put,
    "DELETE /api/v1/credentials/{scope}": _credential_delete,
    "GET /api/v1/rollouts/{id}": _rollout_get,
    "GET /api/v1/rollouts/{id}/report": _rollout_get,
    "POST /api/v1/rollouts/{id}/{action}": _rollout_action,
    "POST /api/v1/rollouts/{id}/jobs/{job}/skip": _skip,
    "POST /api/v1/rollouts": _rollout_body,
    "POST /api/v1/rollouts/preview": _rollout_body,
    "POST /api/v1/devices/probe": _probe,
    "GET /api/v1/firmware/suggestions": _suggestions,
    "POST /api/v1/firmware/{ref}/download-link": _download_link,
    "POST /api/v1/firmware": _upload,
    "POST /api/v1/firmware/import": _import,
    "POST /api/v1/firmware/inspect": _inspect,
    "GET /fw/{file}": _fw,
    "POST /api/v1/report": _report,
    "POST /api/ota/status": _report,
    "POST /api/device/{id}/update-status": _report,
}

_seen: collections.Counter = collections.Counter()
_rewritten: set[str] = set()


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    label = case.operation.label
    rewrite = REWRITES.get(label)
    meta = case.meta
    if rewrite is None or meta is None or meta.generation.mode != GenerationMode.POSITIVE:
        return
    # Counted per phase: each phase (examples, coverage, fuzzing, stateful) gets its own share.
    key = (label, meta.phase.name)
    _seen[key] += 1
    if _seen[key] % EVERY != 1:
        return
    rewrite(case)
    _rewritten.add(case.id)


@schemathesis.hook
def after_call(ctx, case, response):
    if case.id not in _rewritten:
        return
    _rewritten.discard(case.id)
    label = case.operation.label
    if not 200 <= response.status_code < 300:
        # Not a failure by itself (the fuzzer may have changed what it relied on); answered.py fails
        # the run if no such request of an operation ever succeeded, and this says why.
        print(f"known-good {label} answered {response.status_code}: {response.text[:300]} (sent {str(case.body)[:200]})", file=sys.stderr)
    if REWRITES[label] in (_report, _fw) and response.status_code >= 400:
        forget_offer()  # the job ended (the fuzzer cancelled its rollout?): the next rewrite makes a new one


if __name__ == "__main__":
    # `known_good.py defaults`: the site settings back to their defaults. The admin API's run saves
    # random ones, and some apply at once (refusing unauthenticated check-ins, approving new
    # devices, device caps): the device API's run starts from what a fresh site has.
    if sys.argv[1:] != ["defaults"]:
        sys.exit("usage: known_good.py defaults")
    expect(call("PUT", f"{ADMIN}/api/v1/settings", {}), 200)
