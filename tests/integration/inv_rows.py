"""The inventory's credential rows as the fault tests dump them (sqlite3 -separator ' ':
device_id, kind, version, state, fingerprint per line)."""


def credential_rows(path, kind):
    """(active, bad): active maps a device to its [(version, fingerprint)] of rows of kind in
    state active, fingerprints in lower case; bad lists the rows of kind left staged."""
    active, bad = {}, []
    for line in open(path):
        dev, k, ver, state, fpr = line.split()
        if k != kind:
            continue
        if state == "active":
            active.setdefault(dev, []).append((int(ver), fpr.lower()))
        elif state == "staged":
            bad.append("%s %s v%s left staged" % (dev, kind, ver))
    return active, bad
