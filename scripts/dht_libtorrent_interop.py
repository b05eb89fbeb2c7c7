#!/usr/bin/python3
"""Three libtorrent DHT nodes on loopback, for turf's interop test (Tests/DHTTests/InteropTests.swift).

libtorrent (python3-libtorrent) is an independent Mainline DHT implementation. This script:
  1. starts N sessions with only the DHT enabled, bound to 127.0.0.1 (with --v6: to [::1], so
     their DHT is the IPv6 one of BEP 32), and introduces them to each other (plus any extra
     nodes given with --node HOST:PORT or --node [V6]:PORT);
  2. has session 0 announce --announce-hash (as a torrent, on its listen port = its DHT port);
  3. prints one JSON line: {"ready": true, "ports": [...], ...};
  4. then reads commands on stdin, one per line, and answers each with one JSON line:
       lookup HEX   -> get_peers from session 1: {"lookup": HEX, "peers": ["ip:port" or "[v6]:port", ...]}
       add HOST:PORT -> add a DHT node to every session: {"added": "HOST:PORT"} (HOST may be [V6])
       getmutable KEYHEX SALTHEX -> BEP 44 get from session 1: {"item": {"seq", "value"} or null}
       quit          -> exit
Everything is bounded in time; nothing leaves loopback.
"""
import argparse
import atexit
import shutil
import tempfile
import json
import os
import sys
import time

try:
    import libtorrent as lt
except ImportError as e:  # the Swift test skips with this message
    print(json.dumps({"error": "libtorrent not importable: %s" % e}), flush=True)
    sys.exit(3)


def make_session(v6):
    s = lt.session({
        "listen_interfaces": "[::1]:0" if v6 else "127.0.0.1:0",
        "enable_dht": True,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "dht_bootstrap_nodes": "",
        "dht_restrict_routing_ips": False,
        "dht_restrict_search_ips": False,
        "dht_extended_routing_table": False,
        # dht_get_peers_reply_alert needs the DHT operation category; take them all.
        "alert_mask": 0x7FFFFFFF,
    })
    return s


def split_endpoint(text):
    """HOST:PORT or [V6]:PORT -> (host, port), the host without brackets."""
    h, p = text.rsplit(":", 1)
    return h.strip("[]"), int(p)


def show_endpoint(host, port):
    return "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)


def dht_port(s, deadline):
    while time.time() < deadline:
        p = s.listen_port()
        if p:
            return p
        time.sleep(0.05)
    raise SystemExit("no listen port")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, default=3)
    ap.add_argument("--announce-hash", required=True)
    ap.add_argument("--node", action="append", default=[])
    ap.add_argument("--settle", type=float, default=4.0)
    ap.add_argument("--max-seconds", type=float, default=90.0)
    ap.add_argument("--v6", action="store_true", help="bind the sessions to [::1] (BEP 32's IPv6 DHT)")
    args = ap.parse_args()
    end = time.time() + args.max_seconds
    loopback = "::1" if args.v6 else "127.0.0.1"

    sessions = [make_session(args.v6) for _ in range(args.sessions)]
    ports = [dht_port(s, end) for s in sessions]
    for i, s in enumerate(sessions):
        for j, p in enumerate(ports):
            if i != j:
                s.add_dht_node((loopback, p))
        for n in args.node:
            s.add_dht_node(split_endpoint(n))
    time.sleep(args.settle / 2)
    # The binding does not expose dht_announce's flag type, so announce the way a BitTorrent
    # client does: add a torrent (by magnet) and let session 0 announce it on the DHT with its
    # listen port, which is also its DHT port.
    tmp = tempfile.mkdtemp(prefix="turf-lt-")
    atexit.register(shutil.rmtree, tmp, True)
    params = lt.parse_magnet_uri("magnet:?xt=urn:btih:" + args.announce_hash)
    params.save_path = tmp
    sessions[0].add_torrent(params)
    time.sleep(args.settle / 2)
    print(json.dumps({"ready": True, "ports": ports, "announce_hash": args.announce_hash,
                      "announce_peer": show_endpoint(loopback, ports[0])}), flush=True)

    for line in sys.stdin:
        if time.time() > end:
            break
        cmd = line.split()
        if not cmd:
            continue
        if cmd[0] == "quit":
            break
        if cmd[0] == "add" and len(cmd) == 2:
            for s in sessions:
                s.add_dht_node(split_endpoint(cmd[1]))
            print(json.dumps({"added": cmd[1]}), flush=True)
        elif cmd[0] == "getmutable" and len(cmd) == 3:
            # BEP 44: fetch a mutable item by public key (hex) and salt (hex).
            key, salt = bytes.fromhex(cmd[1]), bytes.fromhex(cmd[2])
            s = sessions[1]
            try:
                s.dht_get_mutable_item(key, salt)
            except Exception as e:  # binding differences: report, do not die
                print(json.dumps({"getmutable": cmd[1], "error": str(e)}), flush=True)
                continue
            stop = min(end, time.time() + 15)
            best = None
            while time.time() < stop and best is None:
                s.wait_for_alert(200)
                for a in s.pop_alerts():
                    if os.environ.get("TURF_INTEROP_DEBUG") and type(a).__name__ in ("dht_log_alert", "dht_pkt_alert", "dht_mutable_item_alert"):
                        print(a.message()[:300], file=sys.stderr)
                    if not isinstance(a, lt.dht_mutable_item_alert) or bytes(a.key) != key:
                        continue
                    # Items from the network are kept pre-encoded, which the binding cannot
                    # convert (RuntimeError); the alert's message prints the verified item.
                    msg = a.message()
                    if "<uninitialized>" in msg:  # "not found"
                        continue
                    value = msg[msg.find("[") + 1:msg.rfind("]")].strip()
                    best = {"seq": a.seq, "value": value, "authoritative": a.authoritative}
            print(json.dumps({"getmutable": cmd[1], "item": best}), flush=True)
        elif cmd[0] == "lookup" and len(cmd) == 2:
            target = lt.sha1_hash(bytes.fromhex(cmd[1]))
            found = set()
            # Ask twice from different sessions; each lookup is bounded.
            for s in sessions[1:3]:
                s.dht_get_peers(target)
                stop = min(end, time.time() + 15)
                done = False
                while time.time() < stop and not done:
                    s.wait_for_alert(200)
                    for a in s.pop_alerts():
                        if isinstance(a, lt.dht_get_peers_reply_alert) and str(a.info_hash) == cmd[1]:
                            for ep in a.peers():
                                found.add(show_endpoint(ep[0], ep[1]))
                            done = True
                if found:
                    break
            print(json.dumps({"lookup": cmd[1], "peers": sorted(found)}), flush=True)
        else:
            print(json.dumps({"error": "unknown command"}), flush=True)


if __name__ == "__main__":
    main()
