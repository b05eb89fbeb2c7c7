#!/usr/bin/env bash
# The NAT lab (docs/nat.md): real Linux NATs in network namespaces, and headless turf matches
# across them. Needs root (ip netns, iptables). Nothing leaves the namespaces: no namespace has a
# default route to the real world, the fake internet is a bridge on the documentation ranges, and
# the home LANs are 10.x behind namespace routers.
#
#   scripts/natlab.sh [--turf PATH] [--runs N] [--seconds S] CASE...
#
# Cases (host ↔ joiner):
#   open-cone    a host on the internet, a joiner behind a cone router
#   cone-cone    host and joiner behind two different cone routers
#   cone-cone-key  cone-cone, joining by the host's key (its lobby record's addresses)
#   same-port    cone-cone, both players on --port 7000 in their two homes (the routers keep the
#                port): the joiner must not take the host's address for its own
#   same-nat     host and joiner behind the same cone router (by key: the lobby record's LAN address)
#   random-open  a joiner behind a --random-fully router, an open host
#   cone-random  a host behind a cone router, a joiner behind a --random-fully router
#   random-cone  the roles reversed: a host behind a --random-fully router, a joiner behind a cone
#                one (relayed, then the reversed birthday method)
#   random-random  both behind --random-fully routers (they connect through the relay)
#   member-relay three players, the volunteer relay present: a host behind cone router ra, an open
#                member (pub) that relays for others, then a joiner behind cone router rb, by key,
#                with all UDP between the two routers dropped (they cannot punch): the lobby record
#                lists the member (`r`), and the joiner's session to the host runs through the
#                member, not the volunteer
#   random-random-player  random-random with no volunteer relay anywhere (needs RELAY=0, which it
#                sets when it is the only case): a third player, an open `turf host` on another
#                topic in `pub` started first, relays for the pair (docs/nat.md, "Players relay for
#                each other"); the joiner's session must run through that player's address
#   three        three players: a host behind a cone router, two joiners behind two --random-fully
#                routers (each connects to the host relayed or by the birthday method; the joiners'
#                own pair cannot punch: it goes through the host)
#   three-cone   three players: an open host, two joiners behind two cone routers (introduced by
#                the host's roster, the joiners punch to each other)
#   lt-cone-cone cone-cone, but the DHT is six libtorrent nodes only (scripts/natlab_libtorrent.py):
#                no turf node holds the lobby, so the knock takes the slow path
#   remap        open-cone, and 1 s into the match the joiner's router forgets its mappings
#                (conntrack -F) and maps to new ports (40000-40999): a router restart
#   remap-host   the same with the roles swapped: the host behind router ra, the joiner open; the
#                host's mapping changes mid-match
#   cone-cone-late  cone-cone, but the host's router drops all UDP to and from the joiner's router
#                until the joiner has connected (relayed): the joiner's re-punch moves it to direct
#   cone-cone-later  the same, but the block stays 40 s after the joiner connected (60 s match):
#                past the re-punch's first 30 s, its backed-off rounds still find the direct path
#   remap-relayed  random-random (relayed), and 1 s into the match the joiner's router forgets its
#                mappings (conntrack -F): new random ports; the relay moves the channel's end
#   lan-party    two players on one LAN bridge (10.77.0.0/24) with no DHT node anywhere and no
#                way out (the public bootstrap cannot even be resolved): they meet by BEP 14 local
#                discovery and play over the LAN (its own namespaces; see lan_party below)
#   rejoin       cone-cone with a 10 s match (also cone-random, three; random-cone 15 s); 2 s in, the joiner is killed (kill -9) and started
#                again with the same identity: it knocks again (the host answers knocks through the
#                match), punches and plays on from the host's snapshot (rejoined: true)
# IPv6 cases (docs/nat.md, "IPv6"; the lab's IPv6 internet is 2001:db8::/32, homes get a routed
# /64 behind an ip6tables stateful firewall that drops what was not asked for; six IPv6 `turf dht
# serve` nodes in different /48s, and a relay node that has both families):
#   v6-v6        host and joiner in two IPv6-only homes behind stateful firewalls: both punch, direct
#   cgnat-v6     host and joiner each behind a --random-fully IPv4 NAT (IPv4 alone would be relayed)
#                and a firewalled IPv6 /64: direct over IPv6
#   v6-v4-relay  an IPv6-only host, an IPv4-only joiner (behind a cone router) by invite: no common
#                family, so the session runs through the relay that has both
# Each run prints one JSON line: case, run, ok, join_ms, host_nat, join_nat, path (the joiner's),
# host_path (the host's `peer` event for the joiner), knock, probes_sent (the joiner's),
# host_probes (the host's birthday probes, null without), final_path (after a relayed session's
# upgrade to direct, at upgrade_ms from the joiner's start), family (ipv4 or ipv6, of a direct
# path), host_ipv6 (the host's `nat` event: open, firewalled or none), mesh_path (three players: the first
# joiner's link to the second, direct or relayed through the host), final hashes agree (hashes_agree),
# relay (a relayed joiner's relay address), join2_path and join2_relay (the second joiner's),
# relay_held (random-random with the volunteer: its status line counts the lobbies it announced
# holding, docs/nat.md "Holders"; null in other cases).
# Add LOSS=0.2 to drop 20% of what every router forwards, and RELAY=0 for a lab without the
# relay (punching alone).
#
# Topology: namespace `inet` holds the bridge; six `turf dht serve` nodes in namespace `dht` on
# 198.51.100.11-12, 203.0.113.11-12, 192.0.2.11-12 (two per /24, the routing table's per-/24 limit),
# the first one also a relay (`--relay`);
# `pub` is an open host (203.0.113.50); routers ra, rb (cone) and rc, rd (random) each have a LAN
# 10.N.0.0/24 with hosts a1 a2 / b1 / c1 / d1.
set -euo pipefail

TURF=.build/debug/turf
RUNS=1
SECONDS_MATCH=5
while [ $# -gt 0 ]; do
  case "$1" in
    --turf) TURF=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --seconds) SECONDS_MATCH=$2; shift 2 ;;
    -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1' "$0"; exit 0 ;;
    --*) echo "natlab: unknown option $1" >&2; exit 2 ;;
    *) break ;;
  esac
done
[ $# -gt 0 ] || { echo "natlab: give at least one case (see --help)" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "natlab: needs root (network namespaces, iptables)" >&2; exit 77; }
command -v iptables >/dev/null || { echo "natlab: iptables is missing (scripts/install-deps.sh)" >&2; exit 77; }
TURF=$(readlink -f "$TURF")
[ -x "$TURF" ] || { echo "natlab: no turf binary at $TURF" >&2; exit 2; }
LOSS=${LOSS:-}
# random-random-player is about a lab with no volunteer relay: alone, it makes RELAY=0 the default.
if [ -z "${RELAY:-}" ] && [ "$*" = random-random-player ]; then RELAY=0; fi
RELAY=${RELAY:-1}

# Unique per run: a prefix for every namespace, a scratch directory for logs and XDG homes.
P="tl$$$(printf '%04x' $((RANDOM % 65536)))"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/natlab.XXXXXX")
NSES=()
PIDS=()

cleanup() {
  local pid ns
  # KILL, not TERM: a parent (a test runner) may hand its children a blocked SIGTERM.
  for pid in "${PIDS[@]+"${PIDS[@]}"}"; do kill -KILL "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]+"${PIDS[@]}"}"; do { wait "$pid"; } 2>/dev/null || true; done
  for ns in "${NSES[@]+"${NSES[@]}"}"; do ip netns del "$ns" 2>/dev/null || true; done
  if [ -n "${NATLAB_KEEP:-}" ]; then echo "natlab: logs kept in $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ns() { echo "$P-$1"; }
nsx() { local n=$1; shift; ip netns exec "$(ns "$n")" "$@"; }
newns() {
  ip netns add "$(ns "$1")"
  NSES+=("$(ns "$1")")
  nsx "$1" ip link set lo up
}
# A namespace on the fake internet: a veth into the bridge, its addresses, on-link routes to the
# three documentation /24s (and nothing else).
attach() {
  local name=$1 ifname=$2; shift 2
  local peer="p${#NSES[@]}x$RANDOM"
  peer=${peer:0:15}
  ip link add "$ifname" netns "$(ns "$name")" type veth peer name "$peer" netns "$(ns inet)"
  ip -n "$(ns inet)" link set "$peer" master br0 up
  local a
  for a in "$@"; do ip -n "$(ns "$name")" addr add "$a/32" dev "$ifname"; done
  ip -n "$(ns "$name")" link set "$ifname" up
  local net
  for net in 192.0.2.0/24 198.51.100.0/24 203.0.113.0/24; do
    ip -n "$(ns "$name")" route add "$net" dev "$ifname" src "$1"
  done
}
# A home router: WAN on the internet, a LAN bridge 10.N.0.1/24, NAT of the given kind.
router() {
  local name=$1 wan=$2 n=$3 kind=$4
  newns "$name"
  attach "$name" wan "$wan"
  nsx "$name" ip link add lan type bridge
  nsx "$name" ip addr add "10.$n.0.1/24" dev lan
  nsx "$name" ip link set lan up
  nsx "$name" sysctl -qw net.ipv4.ip_forward=1
  local random=()
  [ "$kind" = random ] && random=(--random-fully)
  nsx "$name" iptables -t nat -A POSTROUTING -o wan -j MASQUERADE "${random[@]+"${random[@]}"}"
  # As home routers do: what comes in on the WAN unsolicited is dropped, not forwarded or answered.
  nsx "$name" iptables -A FORWARD -i wan -m conntrack --ctstate NEW,INVALID -j DROP
  nsx "$name" iptables -A INPUT -i wan -m conntrack --ctstate NEW,INVALID -j DROP
  if [ -n "$LOSS" ]; then
    nsx "$name" iptables -I FORWARD -m statistic --mode random --probability "$LOSS" -j DROP
  fi
}
# A host on router N's LAN.
homehost() {
  local name=$1 rname=$2 n=$3 i=$4
  newns "$name"
  local peer="h${#NSES[@]}x$RANDOM"
  peer=${peer:0:15}
  ip link add eth0 netns "$(ns "$name")" type veth peer name "$peer" netns "$(ns "$rname")"
  nsx "$rname" ip link set "$peer" master lan up
  nsx "$name" ip addr add "10.$n.0.$i/24" dev eth0
  nsx "$name" ip link set eth0 up
  nsx "$name" ip route add default via "10.$n.0.1"
}

# Runs turf in namespace $1 with its own XDG homes, logging to $WORK/$2.{out,err}; its pid in $LASTPID.
start_turf() {
  local name=$1 tag=$2; shift 2
  mkdir -p "$WORK/$tag/config" "$WORK/$tag/state"
  XDG_CONFIG_HOME="$WORK/$tag/config" XDG_STATE_HOME="$WORK/$tag/state" \
    ip netns exec "$(ns "$name")" "$TURF" "$@" >"$WORK/$tag.out" 2>"$WORK/$tag.err" &
  LASTPID=$!
  PIDS+=("$LASTPID")
}
# Waits for process $1 at most $2 seconds (then kills it); its exit status in $WAITRC.
wait_bounded() {
  local pid=$1 tries=$(($2 * 10))
  while kill -0 "$pid" 2>/dev/null && [ "$tries" -gt 0 ]; do
    sleep 0.1
    tries=$((tries - 1))
  done
  kill -KILL "$pid" 2>/dev/null || true
  WAITRC=0
  { wait "$pid"; } 2>/dev/null || WAITRC=$?
}
# Waits (bounded) until file $1 has a line matching $2.
wait_line() {
  local file=$1 pattern=$2 tries=${3:-300}
  while [ "$tries" -gt 0 ]; do
    grep -q -- "$pattern" "$file" 2>/dev/null && return 0
    sleep 0.1
    tries=$((tries - 1))
  done
  return 1
}
# A scalar field of a JSON line ("" when absent or null).
field() { { grep -o "\"$2\":\"\\?[^,\"}]*" <<<"$1" || true; } | head -1 | sed 's/.*:"\?//; s/^null$//'; }
# Any field of a JSON line, parsed as JSON (for values with commas or colons: an invite).
jfield() {
  /usr/bin/python3 -c 'import json, sys
try:
    print(json.loads(sys.stdin.read()).get(sys.argv[1]) or "")
except Exception:
    print("")' "$2" <<<"$1"
}
lastevent() { grep "\"event\":\"$2\"" "$1" 2>/dev/null | tail -1 || true; }

# --- lan-party: a LAN with no DHT (docs/nat.md, "LAN parties") --------------------------------
# Its own bridge and two namespaces on it, nothing else: no router, no DHT node, no default route,
# no name server in reach. The host keeps the default bootstrap (the public routers, which cannot
# be resolved here: a warning, not an error, with discovery on); the joiner's --bootstrap points
# at 10.77.0.99:6881, where nothing answers. They must meet by BEP 14 discovery alone. The bridge
# floods multicast (no IGMP snooping: nothing here would query).
LAN_UP=""
lan_up() {
  [ -n "$LAN_UP" ] && return 0
  newns lanbr
  nsx lanbr ip link add br0 type bridge mcast_snooping 0
  nsx lanbr ip link set br0 up
  local i peer
  for i in 2 3; do
    newns "lan$i"
    peer="l${#NSES[@]}x$RANDOM"
    peer=${peer:0:15}
    ip link add eth0 netns "$(ns "lan$i")" type veth peer name "$peer" netns "$(ns lanbr)"
    ip -n "$(ns lanbr)" link set "$peer" master br0 up
    nsx "lan$i" ip addr add "10.77.0.$i/24" dev eth0
    nsx "lan$i" ip link set eth0 up
  done
  LAN_UP=1
}
lan_party() {
  local r=$1 c=lan-party t0=$SECONDS
  lan_up
  local topic="natlab-$P-$c-$r" h="$c-$r-host" j="$c-$r-join"
  start_turf lan2 "$h" host --topic "$topic" --seconds "$SECONDS_MATCH" --start-when 2 --headless --bot easy \
    --name host
  local hpid=$LASTPID
  # The joiner starts once the host listens on the LAN (join_ms is the joiner's own time).
  wait_line "$WORK/$h.out" '"event":"lan","state":"listening"' 200 || true
  start_turf lan3 "$j" join --topic "$topic" --headless --bot easy --name joiner --bootstrap 10.77.0.99:6881
  local jpid=$LASTPID jrc hrc
  wait_bounded "$jpid" $((SECONDS_MATCH + 45))
  jrc=$WAITRC
  [ "$jrc" -eq 0 ] || kill -KILL "$hpid" 2>/dev/null || true
  wait_bounded "$hpid" 20
  hrc=$WAITRC
  local joined hh jh conn found ok=false agree=false dhtwarn=false
  joined=$(lastevent "$WORK/$j.out" joined)
  hh=$(field "$(lastevent "$WORK/$h.out" end)" final_hash)
  jh=$(field "$(lastevent "$WORK/$j.out" end)" final_hash)
  [ -n "$hh" ] && [ "$hh" = "$jh" ] && agree=true
  conn=$(lastevent "$WORK/$j.out" connected)
  found=$(grep '"event":"lan","state":"found"' "$WORK/$j.out" 2>/dev/null | head -1 || true)
  grep -q '"event":"dht","status":"unreachable"' "$WORK/$h.out" 2>/dev/null && dhtwarn=true
  [ "$jrc" -eq 0 ] && [ "$hrc" -eq 0 ] && [ -n "$joined" ] && [ "$agree" = true ] && [ -n "$found" ] && ok=true
  local path
  path=$(field "$conn" path)
  printf '{"case":"%s","run":%d,"ok":%s,"join_ms":%s,"path":"%s","host_path":"%s","knock":"%s","probes_sent":%s,"host_nat":"%s","join_nat":"%s","hashes_agree":%s,"host_exit":%d,"join_exit":%d,"remapped":null,"rejoined":null,"run_s":%d,"host_probes":null,"final_path":"%s","upgrade_ms":null,"mesh_path":"","lan_found":"%s","lan_after_ms":%s,"host_dht_unreachable":%s,"host_announced":%s}\n' \
    "$c" "$r" "$ok" "$(field "$joined" join_ms | sed 's/^$/null/')" "$path" \
    "$(field "$(grep '"event":"peer"' "$WORK/$h.out" 2>/dev/null | grep '"name":"joiner"' | tail -1 || true)" path)" \
    "$(field "$conn" knock)" "$(field "$conn" probes_sent | sed 's/^$/null/')" \
    "$(field "$(lastevent "$WORK/$h.out" nat)" nat)" "$(field "$(lastevent "$WORK/$j.out" nat)" nat)" \
    "$agree" "$hrc" "$jrc" $((SECONDS - t0)) "$path" \
    "$({ grep -o '"address":"[^"]*"' <<<"$found" || true; } | head -1 | cut -d'"' -f4)" \
    "$(field "$found" after_ms | sed 's/^$/null/')" "$dhtwarn" \
    "$(grep -q '"event":"announced"' "$WORK/$h.out" 2>/dev/null && echo true || echo false)"
  if [ "$ok" != true ] && [ -n "${NATLAB_VERBOSE:-}" ]; then tail -5 "$WORK/$h.err" "$WORK/$j.err" >&2 || true; fi
}
# lan-party alone needs none of the NAT lab below.
LAN_ONLY=1
for c in "$@"; do [ "$c" = lan-party ] || LAN_ONLY=""; done
if [ -n "$LAN_ONLY" ]; then
  for ((r = 1; r <= RUNS; r++)); do lan_party "$r"; done
  exit 0
fi

# --- the lab -----------------------------------------------------------------------------------
newns inet
nsx inet ip link add br0 type bridge
nsx inet ip link set br0 up
newns dht
DHT_IPS=(198.51.100.11 203.0.113.11 192.0.2.11 198.51.100.12 203.0.113.12 192.0.2.12)
attach dht eth0 "${DHT_IPS[@]}"
BOOT="${DHT_IPS[0]}:6881"
for ip in "${DHT_IPS[@]}"; do
  # The first node is also a volunteer relay (docs/nat.md, "Relaying"): random ↔ random runs through it.
  # The relay prints its status line (channels, bytes, `moved`) every 2 s: remap-relayed reads it.
  relay=(--status-every 0)
  [ "$ip" = "${DHT_IPS[0]}" ] && [ "$RELAY" = 1 ] && relay=(--relay --status-every 2)
  start_turf dht "dht-$ip" dht serve --bind "$ip" --port 6881 --no-state --duration 900 \
    --bootstrap "$BOOT" "${relay[@]}"
done
newns pub
attach pub eth0 203.0.113.50
router ra 198.51.100.21 1 cone
router rb 203.0.113.22 2 cone
router rc 192.0.2.23 3 random
router rd 198.51.100.24 4 random
homehost a1 ra 1 2
homehost a2 ra 1 3
homehost b1 rb 2 2
homehost c1 rc 3 2
homehost d1 rd 4 2
# Bootstrap from a few nodes (each knows the first one; a joiner's first lookup finds the rest).
BOOTS="${DHT_IPS[0]}:6881,${DHT_IPS[1]}:6881,${DHT_IPS[2]}:6881"
sleep 1

# IPv6, built by the first IPv6 case. The internet's namespaces reach 2001:db8::/32 on the
# bridge (no DAD: addresses are usable at once) and each home's /64 through its router's WAN.
DHT6_IPS=(2001:db8:11::11 2001:db8:12::12 2001:db8:13::13 2001:db8:14::14 2001:db8:15::15 2001:db8:16::16)
BOOTS6=""
V6_INET=()
V6_HOMES=()
# Namespace $1's interface $2 gets IPv6 addresses $3... (/128) and the on-link internet route.
attach6() {
  local name=$1 ifname=$2 a; shift 2
  nsx "$name" sysctl -qw net.ipv6.conf.all.disable_ipv6=0 net.ipv6.conf.all.accept_dad=0 \
    net.ipv6.conf.default.accept_dad=0
  for a in "$@"; do ip -n "$(ns "$name")" -6 addr add "$a/128" dev "$ifname" nodad; done
  ip -n "$(ns "$name")" -6 route add 2001:db8::/32 dev "$ifname"
  V6_INET+=("$name")
}
# An IPv6 home: router $1 with WAN address $2 routes 2001:db8:10$3::/64 to its LAN, and its
# firewall drops what comes in on the WAN unsolicited (ICMPv6 passes: neighbour discovery).
# $4 "v4": the router also exists for IPv4 (made by `router`); else an IPv6-only router.
router6() {
  local name=$1 wan6=$2 n=$3 v4=${4:-}
  if [ -z "$v4" ]; then
    newns "$name"
    local peer="p${#NSES[@]}x$RANDOM"
    peer=${peer:0:15}
    ip link add wan netns "$(ns "$name")" type veth peer name "$peer" netns "$(ns inet)"
    ip -n "$(ns inet)" link set "$peer" master br0 up
    nsx "$name" ip link set wan up
    nsx "$name" ip link add lan type bridge
    nsx "$name" ip link set lan up
  fi
  attach6 "$name" wan "$wan6"
  nsx "$name" sysctl -qw net.ipv6.conf.all.forwarding=1
  ip -n "$(ns "$name")" -6 addr add "2001:db8:10$n::1/64" dev lan nodad
  nsx "$name" ip6tables -A INPUT -i wan -p ipv6-icmp -j ACCEPT
  nsx "$name" ip6tables -A INPUT -i wan -m conntrack --ctstate NEW,INVALID -j DROP
  nsx "$name" ip6tables -A FORWARD -i wan -p ipv6-icmp -j ACCEPT
  nsx "$name" ip6tables -A FORWARD -i wan -m conntrack --ctstate NEW,INVALID -j DROP
  V6_HOMES+=("$n $wan6")
}
# Host $1 on router $2's LAN gets 2001:db8:10$3::$4/64; $5 "v4": it exists already (homehost).
homehost6() {
  local name=$1 rname=$2 n=$3 i=$4 v4=${5:-}
  if [ -z "$v4" ]; then
    newns "$name"
    local peer="h${#NSES[@]}x$RANDOM"
    peer=${peer:0:15}
    ip link add eth0 netns "$(ns "$name")" type veth peer name "$peer" netns "$(ns "$rname")"
    nsx "$rname" ip link set "$peer" master lan up
    nsx "$name" ip link set eth0 up
  fi
  nsx "$name" sysctl -qw net.ipv6.conf.all.disable_ipv6=0 net.ipv6.conf.all.accept_dad=0 \
    net.ipv6.conf.default.accept_dad=0
  ip -n "$(ns "$name")" -6 addr add "2001:db8:10$n::$i/64" dev eth0 nodad
  ip -n "$(ns "$name")" -6 route add default via "2001:db8:10$n::1"
}
start_ipv6() {
  [ -n "$BOOTS6" ] && return 0
  command -v ip6tables >/dev/null || { echo "natlab: ip6tables is missing (scripts/install-deps.sh)" >&2; return 2; }
  attach6 dht eth0 "${DHT6_IPS[@]}"
  local ip
  for ip in "${DHT6_IPS[@]}"; do
    start_turf dht "dht-$ip" dht serve --bind "$ip" --port 6881 --no-state --status-every 0 --duration 900 \
      --bootstrap "[${DHT6_IPS[0]}]:6881"
  done
  for ip in "${DHT6_IPS[@]}"; do wait_line "$WORK/dht-$ip.out" listening 100 || true; done
  # A first lookup among them, so that they know each other before the first player asks (as
  # the IPv4 nodes have had the lab's setup time to).
  XDG_CONFIG_HOME="$WORK/warm" XDG_STATE_HOME="$WORK/warm" timeout 20 ip netns exec "$(ns dht)" "$TURF" dht lookup \
    --bind "${DHT6_IPS[5]}" --no-state --topic natlab-warm-up --bootstrap "[${DHT6_IPS[0]}]:6881" >/dev/null 2>&1 || true
  # The relay with both families: one IPv4 and one IPv6 address, a dual-stack socket.
  if [ "$RELAY" = 1 ]; then
    newns relay
    attach relay eth0 198.51.100.30
    attach6 relay eth0 2001:db8:30::30
    start_turf relay relay dht serve --port 6881 --no-state --status-every 0 --duration 900 --relay \
      --bootstrap "$BOOT,[${DHT6_IPS[0]}]:6881"
    wait_line "$WORK/relay.out" listening 100 || true
  fi
  # Two IPv6-only homes (e, f), and two homes with a random IPv4 NAT (CGNAT-like) and IPv6 (g, h).
  router6 re 2001:db8:25::1 5
  homehost6 e1 re 5 2
  router6 rf 2001:db8:26::1 6
  homehost6 f1 rf 6 2
  router rg 192.0.2.27 7 random
  router6 rg 2001:db8:27::1 7 v4
  homehost g1 rg 7 2
  homehost6 g1 rg 7 2 v4
  router rh 203.0.113.28 8 random
  router6 rh 2001:db8:28::1 8 v4
  homehost h1 rh 8 2
  homehost6 h1 rh 8 2 v4
  # Every namespace on the IPv6 internet reaches every home's /64 through that home's router.
  local inet home n wan6
  for inet in "${V6_INET[@]}"; do
    for home in "${V6_HOMES[@]}"; do
      read -r n wan6 <<<"$home"
      [ "$(ip -n "$(ns "$inet")" -6 addr show | grep -c "inet6 $wan6/")" -gt 0 ] && continue
      ip -n "$(ns "$inet")" -6 route add "2001:db8:10$n::/64" via "$wan6"
    done
  done
  BOOTS6="[${DHT6_IPS[0]}]:6881,[${DHT6_IPS[1]}]:6881,[${DHT6_IPS[2]}]:6881"
}

# Third-party DHT nodes (libtorrent), started by the first lt-* case: the lobby is announced on
# them only, so the knock takes the slow path.
LT_IPS=(198.51.100.13 203.0.113.13 192.0.2.13 198.51.100.14 203.0.113.14 192.0.2.14)
LT_BOOTS=""
start_libtorrent() {
  [ -n "$LT_BOOTS" ] && return 0
  local ip
  for ip in "${LT_IPS[@]}"; do ip -n "$(ns dht)" addr add "$ip/32" dev eth0; done
  local here
  here=$(dirname "$(readlink -f "$0")")
  ip netns exec "$(ns dht)" /usr/bin/python3 "$here/natlab_libtorrent.py" --seconds 900 "${LT_IPS[@]}" \
    >"$WORK/libtorrent.out" 2>"$WORK/libtorrent.err" &
  PIDS+=("$!")
  wait_line "$WORK/libtorrent.out" ready 100 || { echo "natlab: libtorrent nodes did not start" >&2; return 1; }
  sleep 2
  LT_BOOTS="${LT_IPS[0]}:6881,${LT_IPS[1]}:6881,${LT_IPS[2]}:6881"
}

# --- the cases ---------------------------------------------------------------------------------
run_case() {
  local c=$1 r=$2 hostns joinns join2ns="" by=topic boots=$BOOTS jboots="" port=()
  case "$c" in
    lan-party) lan_party "$r"; return ;;
    lt-cone-cone) hostns=a1 joinns=b1; start_libtorrent || return 2; boots=$LT_BOOTS ;;
    open-cone) hostns=pub joinns=a1 ;;
    cone-cone) hostns=a1 joinns=b1 ;;
    cone-cone-late | cone-cone-later) hostns=a1 joinns=b1 ;;
    remap-relayed) hostns=c1 joinns=d1 ;;
    cone-cone-key) hostns=a1 joinns=b1 by=key ;;
    same-port) hostns=a1 joinns=b1 port=(--port 7000) ;;
    same-nat) hostns=a1 joinns=a2 by=key ;;
    random-open) hostns=pub joinns=c1 ;;
    cone-random) hostns=a1 joinns=c1 ;;
    random-cone) hostns=c1 joinns=a1 ;;
    random-random) hostns=c1 joinns=d1 ;;
    random-random-player)
      [ "$RELAY" = 0 ] || { echo "natlab: random-random-player needs a lab without a volunteer relay (RELAY=0)" >&2; return 2; }
      hostns=c1 joinns=d1 ;;
    remap) hostns=pub joinns=a1 ;;
    remap-host) hostns=a1 joinns=pub ;;
    rejoin) hostns=a1 joinns=b1 ;;
    three) hostns=a1 joinns=c1 join2ns=d1 ;;
    three-cone) hostns=pub joinns=a1 join2ns=b1 ;;
    member-relay) hostns=a1 joinns=pub join2ns=b1 by=key ;;
    v6-v6) start_ipv6 || return 2; hostns=e1 joinns=f1 boots=$BOOTS6 ;;
    cgnat-v6) start_ipv6 || return 2; hostns=g1 joinns=h1 boots="$BOOTS,$BOOTS6" ;;
    v6-v4-relay) start_ipv6 || return 2; hostns=e1 joinns=b1 by=invite boots=$BOOTS6 jboots=$BOOTS ;;
    *) echo "natlab: unknown case $c" >&2; return 2 ;;
  esac
  local topic="natlab-$P-$c-$r" h="$c-$r-host" j="$c-$r-join" j2="$c-$r-join2" t0=$SECONDS players=2
  local secs=$SECONDS_MATCH
  # Cases that move a session mid-match (a rejoin, a relayed start upgraded by the birthday
  # method, whose hit time is random) get a match long enough to show it: at least 10 s.
  case "$c" in rejoin | cone-random | three | cone-cone-late | remap-relayed | lt-cone-cone) secs=$((SECONDS_MATCH > 10 ? SECONDS_MATCH : 10)) ;; esac
  case "$c" in cone-cone-later) secs=$((SECONDS_MATCH > 60 ? SECONDS_MATCH : 60)) ;; esac
  # The reversed birthday upgrade takes 4-7 s from the joiner's start unloaded (bench punch), more
  # on a 2-core machine running the whole test suite: its match runs 15 s so the upgrade fits in it.
  case "$c" in random-cone) secs=$((SECONDS_MATCH > 15 ? SECONDS_MATCH : 15)) ;; esac
  [ -n "$join2ns" ] && players=3
  local ppid="" player="$c-$r-player"
  if [ "$c" = random-random-player ]; then
    # A third player, open, hosting a lobby of its own that nobody joins: its relay service comes
    # on once its NAT is classified, and it is the only relay the pair can find.
    start_turf pub "$player" host --topic "natlab-$P-elsewhere-$r" --seconds 5 --start-when 8 --headless \
      --bot easy --name player --bootstrap "$boots"
    ppid=$LASTPID
    wait_line "$WORK/$player.out" '"event":"relay_service","status":"on"' 200 || true
  fi
  start_turf "$hostns" "$h" host --topic "$topic" --seconds "$secs" --start-when "$players" --headless \
    --bot easy --name host --bootstrap "$boots" ${port[@]+"${port[@]}"}
  local hpid=$LASTPID
  # The joiner starts once the host's DHT node has heard from the network (its `nat` event)
  wait_line "$WORK/$h.out" '"event":"nat"' 200 || true
  # ... and once DHT nodes hold its announcement (`announced`): join_ms is the joiner's own time.
  wait_line "$WORK/$h.out" '"event":"announced"' 200 || true
  # An IPv6 host: until IPv6 nodes hold it as well (the IPv6 DHT answers lookups apart, BEP 32).
  case "$c" in v6-* | cgnat-v6) wait_line "$WORK/$h.out" '"nodes_ipv6":[1-9]' 200 || true ;; esac
  local key target=(--topic "$topic")
  key=$(field "$(lastevent "$WORK/$h.out" lobby)" key)
  [ "$by" = key ] && target=("$key")
  [ "$by" = invite ] && target=("$(jfield "$(lastevent "$WORK/$h.out" lobby)" invite)")
  jboots=${jboots:-$boots}
  if [ "$c" = cone-cone-late ] || [ "$c" = cone-cone-later ] || [ "$c" = member-relay ]; then
    # Nothing passes directly between the two routers (cone-cone-late/-later: until the joiner has
    # connected, relayed; member-relay: at all, the second joiner must go through a relay).
    nsx ra iptables -I FORWARD -p udp -s 203.0.113.22 -j DROP
    nsx ra iptables -I FORWARD -p udp -d 203.0.113.22 -j DROP
  fi
  start_turf "$joinns" "$j" join "${target[@]}" --headless --bot easy --name joiner --bootstrap "$jboots" \
    ${port[@]+"${port[@]}"}
  local jpid=$LASTPID j2pid="" remapped=null held=""
  if [ "$c" = cone-cone-late ] || [ "$c" = cone-cone-later ]; then
    wait_line "$WORK/$j.out" '"event":"connected"' 200 || true
    [ "$c" = cone-cone-later ] && sleep 40
    nsx ra iptables -D FORWARD -p udp -s 203.0.113.22 -j DROP || true
    nsx ra iptables -D FORWARD -p udp -d 203.0.113.22 -j DROP || true
  fi
  if [ "$c" = member-relay ]; then
    # The second joiner comes once the host lists the member as a relay (its record, put again
    # at that moment, says so: `r`), and the put has had a moment to land.
    wait_line "$WORK/$h.out" '"event":"member_relays","relays":\["203.0.113.50' 300 || true
    sleep 1
  fi
  if [ -n "$join2ns" ]; then
    start_turf "$join2ns" "$j2" join "${target[@]}" --headless --bot easy --name joiner2 --bootstrap "$boots"
    j2pid=$LASTPID
  fi
  if [ "$c" = remap ] || [ "$c" = remap-host ]; then
    if wait_line "$WORK/$j.out" '"event":"start"' 400; then
      sleep 1
      nsx ra iptables -t nat -I POSTROUTING -o wan -p udp -j SNAT --to-source 198.51.100.21:40000-40999
      nsx ra conntrack -F >/dev/null 2>&1
    fi
  fi
  if [ "$c" = remap-relayed ] && wait_line "$WORK/$j.out" '"event":"start"' 400; then
    sleep 1
    nsx rd conntrack -F >/dev/null 2>&1 || true
    remapped=false
  fi
  local rejoined=null
  if [ "$c" = rejoin ]; then
    rejoined=false
    if wait_line "$WORK/$j.out" '"event":"start"' 400; then
      sleep 2
      kill -KILL "$jpid" 2>/dev/null || true
      wait "$jpid" 2>/dev/null || true
      # The crashed process's output is kept aside; the restarted one (same XDG dirs, so the same
      # identity) writes the joiner's file that the checks below read.
      mv "$WORK/$j.out" "$WORK/$j.first.out"
      start_turf "$joinns" "$j" join "${target[@]}" --headless --bot easy --name joiner --bootstrap "$boots"
      jpid=$LASTPID
      rejoined=true
    fi
  fi
  local jrc hrc j2rc=0
  wait_bounded "$jpid" $((secs + 45))
  jrc=$WAITRC
  if [ -n "$j2pid" ]; then
    wait_bounded "$j2pid" 20
    j2rc=$WAITRC
    [ "$j2rc" -eq 0 ] || jrc=$j2rc
  fi
  if [ "$jrc" -ne 0 ]; then kill -KILL "$hpid" 2>/dev/null || true; fi
  wait_bounded "$hpid" 20
  hrc=$WAITRC
  [ -n "$ppid" ] && wait_bounded "$ppid" 0
  if [ "$c" = member-relay ]; then
    nsx ra iptables -D FORWARD -p udp -s 203.0.113.22 -j DROP || true
    nsx ra iptables -D FORWARD -p udp -d 203.0.113.22 -j DROP || true
  fi
  # Proof the mapping changed: the router's conntrack holds a flow to the host on a new port.
  if [ "$c" = remap ] || [ "$c" = remap-host ]; then
    remapped=false
    nsx ra conntrack -L -p udp -d 203.0.113.50 2>/dev/null | grep -q 'dport=40[0-9][0-9][0-9] ' && remapped=true
  fi
  { [ "$c" = remap ] || [ "$c" = remap-host ]; } && { nsx ra iptables -t nat -D POSTROUTING -o wan -p udp -j SNAT --to-source 198.51.100.21:40000-40999 || true; }
  # Proof the relay moved the channel's end: its status line (every 2 s) counts `moved`.
  if [ "$c" = remap-relayed ]; then
    grep -h 'moved [1-9]' "$WORK/dht-${DHT_IPS[0]}.out" "$WORK/dht-${DHT_IPS[0]}.err" >/dev/null 2>&1 && remapped=true
  fi
  # Proof the volunteer told the DHT it held the lobby (a holder, docs/nat.md): its status line.
  if [ "$c" = random-random ] && [ "$RELAY" = 1 ]; then
    held=true
    grep -h 'lobbies announced [1-9]' "$WORK/dht-${DHT_IPS[0]}.out" "$WORK/dht-${DHT_IPS[0]}.err" >/dev/null 2>&1 || held=false
  fi
  local joined hend jend hnat jnat
  joined=$(lastevent "$WORK/$j.out" joined)
  hend=$(lastevent "$WORK/$h.out" end)
  jend=$(lastevent "$WORK/$j.out" end)
  hnat=$(field "$(lastevent "$WORK/$h.out" nat)" nat)
  jnat=$(field "$(lastevent "$WORK/$j.out" nat)" nat)
  local hh jh ok=false agree=false
  hh=$(field "$hend" final_hash)
  jh=$(field "$jend" final_hash)
  [ -n "$hh" ] && [ "$hh" = "$jh" ] && agree=true
  if [ -n "$join2ns" ] && [ "$(field "$(lastevent "$WORK/$j2.out" end)" final_hash)" != "$hh" ]; then agree=false; fi
  [ "$jrc" -eq 0 ] && [ "$hrc" -eq 0 ] && [ -n "$joined" ] && [ "$agree" = true ] && ok=true
  [ "$c" = remap-relayed ] && [ "$remapped" != true ] && ok=false
  [ "$held" = false ] && ok=false
  local jms path probes relay=""
  jms=$(field "$joined" join_ms)
  path=$(field "$(lastevent "$WORK/$j.out" connected)" path)
  [ "$path" = relayed ] && relay=$(jfield "$(lastevent "$WORK/$j.out" connected)" address)
  # Through the third player's relay, and nowhere else.
  if [ "$c" = random-random-player ] && { [ "$path" != relayed ] || [ "${relay%:*}" != 203.0.113.50 ]; }; then ok=false; fi
  local path2="" relay2=""
  if [ -n "$join2ns" ]; then
    path2=$(field "$(lastevent "$WORK/$j2.out" connected)" path)
    [ "$path2" = relayed ] && relay2=$(jfield "$(lastevent "$WORK/$j2.out" connected)" address)
  fi
  # The second joiner through the member (pub), before the volunteer.
  if [ "$c" = member-relay ] && { [ "$path2" != relayed ] || [ "${relay2%:*}" != 203.0.113.50 ]; }; then ok=false; fi
  probes=$(field "$(lastevent "$WORK/$j.out" connected)" probes_sent)
  local knock hpath hprobes fpath fms mesh=""
  # Three players: how the first joiner's match reached the second (its `end` event's link to the
  # key that is not the host's): direct, or relayed (through the host).
  if [ -n "$join2ns" ]; then
    mesh=$(lastevent "$WORK/$j.out" end | /usr/bin/python3 -c '
import json, sys
host = sys.argv[1]
try:
    e = json.loads(sys.stdin.read())
    print(next((l["path"] for l in e.get("links", []) if l.get("key") != host), ""))
except Exception:
    print("")' "$key" 2>/dev/null || true)
  fi
  knock=$(field "$(lastevent "$WORK/$j.out" connected)" knock)
  local family hv6
  family=$(field "$(lastevent "$WORK/$j.out" connected)" family)
  hv6=$(field "$(lastevent "$WORK/$h.out" nat)" ipv6)
  # The host's view of the joiner's link (its `peer` event): direct or relayed.
  hpath=$(field "$(grep '"event":"peer"' "$WORK/$h.out" 2>/dev/null | grep '"name":"joiner"' | tail -1 || true)" path)
  # Where the joiner's session to the host ended up (a relayed one may upgrade: its `path` event).
  fpath=$(field "$(lastevent "$WORK/$j.out" path)" path)
  fms=$(grep '"event":"path"' "$WORK/$j.out" 2>/dev/null | grep '"was":"relayed"' | head -1 || true)
  fms=$(field "$fms" after_ms)
  # The host's birthday probes (cone-random): the sum over its `birthday` events, null without one.
  hprobes=$(grep -o '"event":"birthday".*"probes_sent":[0-9]*' "$WORK/$h.out" 2>/dev/null | sed 's/.*://' | awk '{s += $1} END {if (NR) print s}' || true)
  printf '{"case":"%s","run":%d,"ok":%s,"join_ms":%s,"path":"%s","host_path":"%s","knock":"%s","probes_sent":%s,"host_nat":"%s","join_nat":"%s","hashes_agree":%s,"host_exit":%d,"join_exit":%d,"remapped":%s,"rejoined":%s,"run_s":%d,"host_probes":%s,"final_path":"%s","upgrade_ms":%s,"mesh_path":"%s","family":"%s","host_ipv6":"%s","relay":"%s","join2_path":"%s","join2_relay":"%s","relay_held":%s}\n' \
    "$c" "$r" "$ok" "${jms:-null}" "${path:-}" "${hpath:-}" "${knock:-}" "${probes:-null}" "${hnat:-}" "${jnat:-}" "$agree" "$hrc" "$jrc" "$remapped" "$rejoined" $((SECONDS - t0)) "${hprobes:-null}" "${fpath:-${path:-}}" "${fms:-null}" "$mesh" "${family:-}" "${hv6:-}" "$relay" "$path2" "$relay2" "${held:-null}"
  if [ "$ok" != true ] && [ -n "${NATLAB_VERBOSE:-}" ]; then
    tail -5 "$WORK/$h.err" "$WORK/$j.err" >&2 || true
    [ -n "$join2ns" ] && { tail -5 "$WORK/$j2.err" >&2 || true; }
  fi
}

for c in "$@"; do
  for ((r = 1; r <= RUNS; r++)); do run_case "$c" "$r"; done
done
