#!/usr/bin/python3
"""Third-party DHT nodes for the NAT lab (scripts/natlab.sh, case lt-cone-cone): one libtorrent
(python3-libtorrent) session per address given, DHT only, listening on ADDRESS:6881, each told
about the others. They store announcements (BEP 5) but know nothing of turf's knock messages, so
a lobby they hold can only be knocked at by the slow path (docs/nat.md). Runs at most --seconds.
"""
import argparse
import sys
import time

try:
    import libtorrent as lt
except ImportError as e:
    print("natlab_libtorrent: libtorrent not importable: %s" % e, file=sys.stderr, flush=True)
    sys.exit(3)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=900.0)
    ap.add_argument("addresses", nargs="+")
    args = ap.parse_args()
    sessions = []
    for a in args.addresses:
        sessions.append(lt.session({
            "listen_interfaces": "%s:6881" % a,
            "enable_dht": True,
            "enable_lsd": False,
            "enable_upnp": False,
            "enable_natpmp": False,
            "dht_bootstrap_nodes": "",
            "alert_mask": 0,
        }))
    for s in sessions:
        for a in args.addresses:
            s.add_dht_node((a, 6881))
    print("ready", flush=True)
    end = time.time() + min(args.seconds, 3600.0)
    while time.time() < end:
        time.sleep(1.0)


if __name__ == "__main__":
    main()
