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


def check_one_active(rows_path, index_path, n):
    """The inventory's mtls_cert rows (rows_path: "device version state fingerprint" lines)
    against the CA index: per device exactly one active row (version >= 2, a successor), none
    left staged, and exactly one unrevoked device certificate in the index, the one that row
    names; n devices in all. Returns (problems, issued, revoked)."""
    active, bad = {}, []
    for line in open(rows_path):
        dev, ver, state, fpr = line.split()
        if state == "active":
            active.setdefault(dev, []).append((int(ver), fpr.lower()))
        elif state == "staged":
            bad.append("%s v%s left staged" % (dev, ver))
    live, revoked = device_certs(index_path)
    for dev, rows in sorted(active.items()):
        if len(rows) != 1 or rows[0][0] < 2:
            bad.append("%s: active mtls rows %s (want one, version >= 2)" % (dev, rows))
            continue
        certs = [c for c in live.get(dev, []) if c[0] not in revoked]
        if [c[1] for c in certs] != [rows[0][1]]:
            bad.append("%s: unrevoked certificates %s, inventory active %s" % (dev, certs, rows[0]))
    if len(active) != n:
        bad.append("%d devices with an active mtls row, not %d" % (len(active), n))
    return bad, sum(len(v) for v in live.values()), len(revoked)
