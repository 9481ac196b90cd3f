#!/usr/bin/env python3
"""The value checks of the operations tests (ops_metrics.sh, ops_dashboard.sh).

  ops_check.py metrics M1 M2 DEVICES ROTATION --t0 S --t1 S --offline ID --cert-end S
  ops_check.py dashboard DOM DEVICES ROTATION METRICS

metrics: M1 and M2 are two scrapes of /metrics (M1 taken between the unix times t0 and t1),
DEVICES the answer of /api/devices?credentials=1, ROTATION /api/rotation/ID?devices=1. The
exposition text is read by a parser of its own here (strict: every sample's family has HELP
and TYPE, label values unescaped by the format's rules), and the numbers are compared with
what the API and the fixture say: devices by state, credentials by kind and state, the
expiry horizon (against the offline robot's certificate as openssl reads it), the rotation
per wave, class and state, handshakes and refusals, counters that never go down.

dashboard: DOM is what headless Chromium rendered (--dump-dom); its numbers must be those of
the API and of /metrics.

Exit status 0 when every check holds; 1 with one line per failed check."""

import json
import re
import sys
from html.parser import HTMLParser

FAILED = []


def check(cond, what):
    if not cond:
        FAILED.append(what)


# ---- the exposition format -----------------------------------------------------------------

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
SAMPLE = re.compile(r"^(" + NAME + r")(\{(.*)\})? (\S+)( -?[0-9]+)?$")


def parse_labels(text, line_no):
    """name="value",... with the format's escapes (\\\\, \\", \\n) only."""
    labels = {}
    i = 0
    while i < len(text):
        m = re.match(r"([a-zA-Z_][a-zA-Z0-9_]*)=\"", text[i:])
        if not m:
            raise ValueError("line %d: bad label at %r" % (line_no, text[i:]))
        name = m.group(1)
        i += m.end()
        value = []
        while True:
            if i >= len(text):
                raise ValueError("line %d: unterminated label value" % line_no)
            c = text[i]
            if c == "\\":
                nxt = text[i + 1] if i + 1 < len(text) else ""
                if nxt not in ("\\", '"', "n"):
                    raise ValueError("line %d: bad escape \\%s" % (line_no, nxt))
                value.append("\n" if nxt == "n" else nxt)
                i += 2
            elif c == '"':
                i += 1
                break
            else:
                value.append(c)
                i += 1
        if name in labels:
            raise ValueError("line %d: label %s twice" % (line_no, name))
        labels[name] = "".join(value)
        if i < len(text):
            if text[i] != ",":
                raise ValueError("line %d: expected , after a label" % line_no)
            i += 1
    return labels


def parse_exposition(path):
    """{(name, frozenset of label items): value}, {family: type}, {family: help}."""
    samples, types, helps = {}, {}, {}
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if not text.endswith("\n"):
        raise ValueError("%s: the last line has no line feed" % path)
    for n, line in enumerate(text.split("\n")[:-1], 1):
        if line.startswith("# HELP "):
            name, _, doc = line[7:].partition(" ")
            check(name not in helps, "%s:%d: second HELP for %s" % (path, n, name))
            helps[name] = doc
            continue
        if line.startswith("# TYPE "):
            name, _, typ = line[7:].partition(" ")
            check(typ in ("counter", "gauge", "histogram", "summary", "untyped"),
                  "%s:%d: type %r" % (path, n, typ))
            check(name not in types, "%s:%d: second TYPE for %s" % (path, n, name))
            types[name] = typ
            continue
        if line.startswith("#") or line == "":
            continue
        m = SAMPLE.match(line)
        if not m:
            raise ValueError("%s:%d: not a sample: %r" % (path, n, line))
        name = m.group(1)
        labels = parse_labels(m.group(3) or "", n)
        key = (name, frozenset(labels.items()))
        check(key not in samples, "%s:%d: sample repeated: %s" % (path, n, line))
        samples[key] = float(m.group(4))
        check(name in types and name in helps,
              "%s:%d: %s has no TYPE/HELP before it" % (path, n, name))
    return samples, types, helps


def value(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())))


def family(samples, name):
    return {k[1]: v for k, v in samples.items() if k[0] == name}


# ---- fixtures ---------------------------------------------------------------------------------


def rfc3339(s):
    """Seconds since the epoch of "YYYY-MM-DDTHH:MM:SSZ" (what the inventory stores)."""
    import calendar
    import time
    return calendar.timegm(time.strptime(s, "%Y-%m-%dT%H:%M:%SZ"))


def load(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def plan_waves(rot):
    """Per wave (1-based) and state: the devices of the plan's mtls class, from the API."""
    per = {}
    for d in rot["devices"]:
        per.setdefault(d["wave"], {}).setdefault(d["mtls"], 0)
        per[d["wave"]][d["mtls"]] += 1
    return per


def check_metrics(argv):
    m1, m2, devices_path, rot_path = argv[:4]
    opts = dict(zip(argv[4::2], argv[5::2]))
    t0, t1 = int(opts["--t0"]), int(opts["--t1"])
    offline, cert_end = opts["--offline"], int(opts["--cert-end"])
    s1, types, helps = parse_exposition(m1)
    s2, _, _ = parse_exposition(m2)
    devices = load(devices_path)["devices"]
    rot = load(rot_path)

    for name, typ in types.items():
        check(helps.get(name, "").strip() != "", "%s: empty HELP" % name)
        if typ == "counter":
            check(name.endswith("_total"), "counter %s does not end in _total" % name)
            for labels, v in family(s1, name).items():
                v2 = value(s2, name, **dict(labels))
                check(v2 is not None and v2 >= v, "counter %s%s went down" % (name, dict(labels)))

    # Devices by state, as the inventory holds them.
    states = {}
    for d in devices:
        states[d["state"]] = states.get(d["state"], 0) + 1
    check(family(s1, "fleetkey_devices") == {frozenset({("state", k)}): float(v)
                                              for k, v in states.items()},
          "fleetkey_devices %s, API %s" % (family(s1, "fleetkey_devices"), states))
    check(len(devices) == 4, "the fixture has 4 devices, the API %d" % len(devices))

    # Credentials by kind and state; the expiry horizon of the active ones.
    creds, expiries = {}, {}
    for d in devices:
        for c in d["credentials"]:
            creds[(c["kind"], c["state"])] = creds.get((c["kind"], c["state"]), 0) + 1
            if c["state"] == "active" and c["expires_at"]:
                expiries.setdefault(c["kind"], []).append(rfc3339(c["expires_at"]))
    kinds = {k for k, _ in creds}
    for kind in kinds:
        for st in ("active", "staged", "retired", "revoked"):
            got = value(s1, "fleetkey_credentials", kind=kind, state=st)
            check(got == creds.get((kind, st), 0),
                  "fleetkey_credentials{kind=%r,state=%s} %s, API %s" %
                  (kind, st, got, creds.get((kind, st), 0)))
    check('odd"kind\\\nx' in kinds, "the inserted odd kind is not in the API: %s" % kinds)
    for kind, ends in expiries.items():
        got = value(s1, "fleetkey_credential_expiry_min_seconds", kind=kind)
        # The scrape happened between t0 and t1: min(ends) - got is that moment.
        check(got is not None and t0 <= min(ends) - got <= t1 + 1,
              "expiry_min{%s} %s, earliest expiry %d, scraped in [%d, %d]" %
              (kind, got, min(ends), t0, t1))
        for days in (7, 30, 90):
            want = sum(1 for e in ends if e <= t0 + days * 86400)
            got = value(s1, "fleetkey_credentials_expiring", kind=kind, within="%dd" % days)
            check(got == want, "expiring{%s,%dd} %s, expected %d" % (kind, days, got, want))
        want = sum(1 for e in ends if e <= t0)
        got = value(s1, "fleetkey_credentials_expired", kind=kind)
        check(got == want, "expired{%s} %s, expected %d" % (kind, got, want))
    # The earliest certificate is the offline robot's factory one, as openssl reads it.
    off = [d for d in devices if d["id"] == offline][0]
    off_end = [rfc3339(c["expires_at"]) for c in off["credentials"]
               if c["kind"] == "mtls_cert" and c["state"] == "active"]
    check(off_end == [cert_end], "offline robot's certificate: API %s, openssl %d" %
          (off_end, cert_end))
    check(min(expiries["mtls_cert"]) == cert_end, "the earliest mtls expiry is not the offline's")
    check(value(s1, "fleetkey_credentials_expiring", kind="mtls_cert", within="7d") == 0 and
          value(s1, "fleetkey_credentials_expiring", kind="mtls_cert", within="30d") == 1 and
          value(s1, "fleetkey_credentials_expiring", kind="mtls_cert", within="90d") == 1,
          "mtls_cert: expected 0 / 1 / 1 within 7 / 30 / 90 days")
    check(value(s1, "fleetkey_credentials_expiring", kind="oauth_token", within="7d") == 2 and
          value(s1, "fleetkey_credentials_expired", kind="oauth_token") == 1,
          "oauth_token: expected 2 within 7 days, 1 expired")
    check(value(s1, "fleetkey_credential_expiry_min_seconds", kind="oauth_token") < 0,
          "oauth_token: an expired token must show a negative horizon")
    check(value(s1, "fleetkey_credential_expiry_unreadable") == 0, "unreadable expiries")
    check(value(s1, "fleetkey_inventory_readable") == 1, "inventory not readable")

    # The rotation: settled (the offline robot holds the interlock), per wave, class, state.
    plan = rot["id"]
    for st in ("running", "paused", "settled", "done", "aborted"):
        got = value(s1, "fleetkey_rotation_plan_state", plan=plan, state=st)
        check(got == (1 if st == "settled" else 0), "plan_state{%s} %s" % (st, got))
    per = plan_waves(rot)
    check(sorted(per) == [1, 2], "waves in the API: %s" % sorted(per))
    for w in (1, 2):
        check(value(s1, "fleetkey_rotation_wave_open", plan=plan, wave=str(w)) == 1,
              "wave %d not open" % w)
        check(sum(per.get(w, {}).values()) == 2, "wave %d: %s" % (w, per.get(w)))
        for st in ("pending", "sent", "confirmed", "failed", "rolled_back"):
            got = value(s1, "fleetkey_rotation_wave_devices", plan=plan, wave=str(w), **{
                "class": "mtls", "state": st})
            check(got == per.get(w, {}).get(st, 0),
                  "wave_devices{wave=%d,state=%s} %s, API %s" % (w, st, got, per.get(w)))
        wp = rot["wave_progress"][w - 1]
        check(wp["confirmed"] == per.get(w, {}).get("confirmed", 0) and wp["devices"] == 2,
              "wave_progress %s disagrees with the devices %s" % (wp, per.get(w)))
    check(value(s1, "fleetkey_rotation_devices", plan=plan, state="confirmed", **{
        "class": "mtls"}) == 3, "fleetkey_rotation_devices confirmed != 3")
    check(value(s1, "fleetkey_rotation_devices", plan=plan, state="pending", **{
        "class": "mtls"}) == 1, "fleetkey_rotation_devices pending != 1")
    blocked = [d["device"] for d in rot["devices"] if d["mtls"] != "confirmed"]
    check(blocked == [offline] and rot["blockers"] == [offline],
          "not confirmed: %s, blockers %s, expected [%s]" % (blocked, rot["blockers"], offline))
    check(value(s1, "fleetkey_rotation_devices_offline") == 1, "offline gauge != 1")
    check(value(s1, "fleetkey_rotation_commits_total") == 3, "commits != 3")

    # Handshakes and refusals: 3 robots connected twice each (old, then new certificate), the
    # operator's requests, one client without a certificate.
    check(value(s1, "fleetkey_handshakes_total") >= 6, "fewer than 6 handshakes")
    check(value(s1, "fleetkey_rejections_total", reason="no_cert") >= 1, "no no_cert refusal")
    check(value(s1, "fleetkey_connections_open") == 3, "connections_open != 3")
    return 0


# ---- the rendered dashboard -----------------------------------------------------------------


class Dom(HTMLParser):
    """Text of elements with an id, the data-* of table rows by class, body's data-ready."""

    def __init__(self):
        super().__init__()
        self.text, self.rows, self.stack, self.ready = {}, {}, [], None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "body":
            self.ready = a.get("data-ready")
        if tag == "tr" and a.get("class"):
            self.rows.setdefault(a["class"], []).append(
                {k[5:]: v for k, v in a.items() if k.startswith("data-")})
        self.stack.append((tag, a.get("id")))
        if a.get("id"):
            self.text[a["id"]] = ""

    def handle_endtag(self, tag):
        while self.stack:
            t, _ = self.stack.pop()
            if t == tag:
                break

    def handle_data(self, data):
        for _, i in self.stack:
            if i:
                self.text[i] += data


def check_dashboard(argv):
    dom_path, devices_path, rot_path, metrics_path = argv[:4]
    dom = Dom()
    with open(dom_path, encoding="utf-8") as f:
        dom.feed(f.read())
    devices = load(devices_path)["devices"]
    rot = load(rot_path)
    samples, _, _ = parse_exposition(metrics_path)
    check(dom.ready == "1", "the page did not render (data-ready=%r, status %r)" %
          (dom.ready, dom.text.get("status")))

    def num(i):
        try:
            return int(dom.text.get(i, "").strip())
        except ValueError:
            return None

    check(num("device-count") == len(devices) == 4,
          "device count %r, API %d" % (dom.text.get("device-count"), len(devices)))
    check(num("connected-count") == sum(1 for d in devices if d["connected"]) == 3,
          "connected %r" % dom.text.get("connected-count"))
    check(num("rotated-count") == rot["counts"]["confirmed"] == 3,
          "rotated %r, API %s" % (dom.text.get("rotated-count"), rot["counts"]["confirmed"]))
    want = value(samples, "fleetkey_credentials_expiring", kind="mtls_cert", within="30d")
    check(num("expiring-count") == want == 1,
          "expiring %r, /metrics %s" % (dom.text.get("expiring-count"), want))
    check(dom.text.get("plan-id", "").strip() == rot["id"], "plan id %r" % dom.text.get("plan-id"))
    check(dom.text.get("plan-state", "").strip() == "settled",
          "plan state %r" % dom.text.get("plan-state"))
    waves = dom.rows.get("wave", [])
    check(len(waves) == len(rot["wave_progress"]) == 2, "wave rows %s" % waves)
    for row, wp in zip(waves, rot["wave_progress"]):
        for k, dk in (("wave", "wave"), ("devices", "devices"), ("confirmed", "confirmed"),
                      ("in_flight", "in-flight"), ("pending", "pending"), ("offline", "offline"),
                      ("failed", "failed")):
            check(row.get(dk) == str(wp[k]), "wave %s: %s %r, API %s" %
                  (wp["wave"], k, row.get(dk), wp[k]))
    ids = sorted(r.get("id") for r in dom.rows.get("device", []))
    check(ids == sorted(d["id"] for d in devices), "device rows %s" % ids)
    seqs = [int(r["seq"]) for r in dom.rows.get("audit", [])]
    check(len(seqs) > 0 and seqs == sorted(seqs), "audit rows %s" % seqs)
    return 0


def main():
    if len(sys.argv) < 2 or sys.argv[1] not in ("metrics", "dashboard"):
        print(__doc__, file=sys.stderr)
        return 2
    try:
        (check_metrics if sys.argv[1] == "metrics" else check_dashboard)(sys.argv[2:])
    except (ValueError, KeyError, IndexError, TypeError, OSError) as e:
        FAILED.append("%s: %r" % (type(e).__name__, e))
    for f in FAILED:
        print("FAIL: " + f, file=sys.stderr)
    if not FAILED:
        print("ops_check %s: every check holds" % sys.argv[1])
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
