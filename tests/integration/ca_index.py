"""The CA index (pki/index.jsonl, docs/pki.md) as the crash and fault tests read it."""
import json


def device_certs(path):
    """(issued, revoked): issued maps a device name to its [(serial, fingerprint)] in issue
    order, fingerprints in lower case; revoked is the set of revoked serials."""
    issued, revoked = {}, set()
    for line in open(path):
        e = json.loads(line)
        if e.get("op") == "revoke":
            revoked.add(e["serial"])
        elif e.get("op") == "issue" and e.get("kind") == "device":
            issued.setdefault(e["name"], []).append((e["serial"], e["fingerprint"].lower()))
    return issued, revoked
