#!/bin/sh
# Scenario "net": the pod network of xen pods, and stats/resources of their containers. dom0 has
# Debian's CNI plugins (bridge + host-local + loopback) and a network config as a node would; the
# daemon runs CNI for each xen pod's netns in dom0 and joins the domain's vif to the pod's eth0 there
# (tc redirects); the agent puts the pod's IP on the guest's interface. dom0 pings the pod; a
# container in the guest pings the gateway and the other pod; a daemon restart keeps the network;
# stats of a busy container come from the guest's cgroup; UpdateContainerResources changes its
# memory.max; with the pod's domain destroyed behind the daemon's back, stats and update answer at
# once (zeros; FAILED_PRECONDITION); stop/remove leave no vif, netns, veth, tc state, IPAM lease or
# CNI cache entry.
# expect: VGPU-XEN DAEMON-UP
# expect: VGPU-XEN NET-POD-READY web
# expect: VGPU-XEN NET-POD-IP
# expect: VGPU-XEN NET-DOM0-PING-POD-OK
# expect: VGPU-XEN NET-CTR-PING-GW-OK
# expect: VGPU-XEN NET-CTR-TCP-OK
# expect: VGPU-XEN NET-PODS-REACH-OK
# expect: VGPU-XEN NET-RESTART-KEPT
# expect: VGPU-XEN STATS-OK
# expect: VGPU-XEN POD-STATS-OK
# expect: VGPU-XEN UPDATE-OK
# expect: VGPU-XEN GONE-DOMAIN-STATS-OK
# expect: VGPU-XEN NET-NOTHING-LEFT
. /vgpu/scenarios/daemon-lib.sh
for m in loop xen-blkback xen-netback llc stp bridge veth sch_ingress cls_matchall act_mirred; do
	insmod /lib/modules/$m.ko || fail "insmod $m"
done
ip link set lo up
mkdir -p /etc/cni/net.d
write_config "  backend: none" "cni:
  conf_dir: /etc/cni/net.d
  bin_dirs: [/usr/lib/cni]" 256 ""
# as in test/integration/test_cni.py: a bridge with the gateway on it, host-local leases
cat > /etc/cni/net.d/10-xenpods.conflist <<'JSON'
{"cniVersion": "1.0.0", "name": "xenpods", "plugins": [
  {"type": "loopback"},
  {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.88.7.0/24"}]], "routes": [{"dst": "0.0.0.0/0"}]}}
]}
JSON
img=$(cat /vgpu/image-ref)
start_daemon
mark DAEMON-UP "pid=$daemon_pid image=$img"
ipof() { cri-client status "$1" | sed -n 's/.* ip=\([^ ]*\) info=.*/\1/p'; }

# ---- a xen pod on the CNI network ----
t0=$(up)
out=$(cri-client run-pod web xen) || fail "RunPodSandbox: $out"
id=$(echo "$out" | sed -n 's/^CRI pod //p')
[ -n "$id" ] || fail "no pod id in: $out"
mark NET-POD-READY web "id=$id run_pod_s=$(dt "$t0" "$(up)")"
grep -E "sandbox $id: (domain .* created|pod network)" $dlog
ip1=$(ipof "$id")
case $ip1 in 10.88.7.*) ;; *) fail "pod IP '$ip1' (want 10.88.7.x): $(cri-client status "$id")" ;; esac
domid=$(xl domid "vgpu-$(echo "$id" | cut -c1-12)-web") || fail "no domid"
nsf=/run/vgpu-cri/netns/$id
[ -e "$nsf" ] || fail "no netns $nsf"
vifmac=$(cri-client status "$id" | sed -n 's/.*"vifMac":"\([0-9a-f:]*\)".*/\1/p')
[ -n "$vifmac" ] || fail "no vifMac in the verbose status: $(cri-client status "$id")"
mark NET-POD-IP "ip=$ip1 domid=$domid vif_mac=$vifmac"
echo "--- pod netns: links and tc filters"
nsenter --net="$nsf" ip link || true
nsenter --net="$nsf" tc qdisc show dev eth0 2>&1 || true
nsenter --net="$nsf" tc qdisc show dev "vif$domid.0" 2>&1 || true

t1=$(up)
n=0
while ! ping -c 1 -W 2 "$ip1" >/dev/null 2>&1; do
	n=$((n + 1))
	[ $n -gt 30 ] && fail "dom0 cannot ping the pod at $ip1"
done
ping -c 3 -W 3 "$ip1" || fail "dom0 ping $ip1"
mark NET-DOM0-PING-POD-OK "first_reply_s=$(dt "$t1" "$(up)")"

# ---- a busy container in the pod: network from inside, stats ----
out=$(cri-client create "$id" busy "$img" sh -c 'while :; do :; done') || fail "CreateContainer: $out"
cid=$(echo "$out" | sed -n 's/^CRI container //p')
out=$(cri-client start "$cid") || fail "StartContainer: $out"
out=$(cri-client exec "$cid" 60 sh -c 'ip -4 addr show; ip route; ping -c 2 -W 5 10.88.7.1') || fail "exec ping: $out"
echo "$out"
case $out in *"CRI exec exit=0 "*"$ip1/24"*"default via 10.88.7.1"*) ;; *) fail "container cannot reach the gateway: $out" ;; esac
mark NET-CTR-PING-GW-OK
# TCP through the redirects (checksum offload across veth, tc and netback): a file over HTTP from dom0
mkdir -p /tmp/www && head -c 300000 /dev/urandom > /tmp/www/blob && md5=$(md5sum < /tmp/www/blob | cut -d' ' -f1)
httpd -p 10.88.7.1:8080 -h /tmp/www || fail "httpd in dom0"
out=$(cri-client exec "$cid" 60 sh -c 'wget -q -O - http://10.88.7.1:8080/blob | md5sum') || fail "exec wget: $out"
case $out in "CRI exec exit=0 stdout=$md5 "*) ;; *) fail "wget from the container: $out (want $md5)" ;; esac
mark NET-CTR-TCP-OK "bytes=300000"

out=$(cri-client run-pod web2 xen) || fail "RunPodSandbox web2: $out"
id2=$(echo "$out" | sed -n 's/^CRI pod //p')
ip2=$(ipof "$id2")
case $ip2 in 10.88.7.*) [ "$ip2" != "$ip1" ] || fail "same IP twice" ;; *) fail "web2 IP '$ip2'" ;; esac
out=$(cri-client exec "$cid" 60 ping -c 2 -W 5 "$ip2") || fail "exec ping web2: $out"
case $out in "CRI exec exit=0 "*) ;; *) fail "pod web cannot reach pod web2 at $ip2: $out" ;; esac
ping -c 1 -W 5 "$ip2" >/dev/null || fail "dom0 cannot ping web2 at $ip2"
mark NET-PODS-REACH-OK "web=$ip1 web2=$ip2"

stop_daemon
start_daemon
[ "$(ipof "$id")" = "$ip1" ] || fail "pod IP after restart: $(cri-client status "$id")"
cri-client status "$id" | grep -q "\"vifMac\":\"$vifmac\"" || fail "vif not on record after restart (meta.json)"
ping -c 1 -W 5 "$ip1" >/dev/null || fail "no ping after restart"
out=$(cri-client exec "$cid" 60 ping -c 1 -W 5 10.88.7.1) || fail "exec ping after restart: $out"
mark NET-RESTART-KEPT

# ---- stats from the guest's cgroup, UpdateContainerResources ----
cri-client cstats "$cid" >/dev/null || fail "ContainerStats"
sleep 2
st=$(cri-client cstats "$cid") || fail "ContainerStats: $st"
echo "$st"
cpu=$(echo "$st" | sed -n 's/.* cpu_ns=\([0-9]*\) .*/\1/p')
cores=$(echo "$st" | sed -n 's/.* nano_cores=\([0-9]*\) .*/\1/p')
mem=$(echo "$st" | sed -n 's/.* mem_usage=\([0-9]*\) .*/\1/p')
[ "${cpu:-0}" -gt 0 ] && [ "${cores:-0}" -gt 0 ] && [ "${mem:-0}" -gt 0 ] || fail "stats of a busy container: $st"
cri-client lstats | grep -q "CRI cstats $cid cpu_ns=[1-9]" || fail "ListContainerStats: $(cri-client lstats)"
mark STATS-OK "cpu_ns=$cpu nano_cores=$cores mem_usage=$mem"
ps_out=$(cri-client pstats "$id") || fail "PodSandboxStats: $ps_out"
echo "$ps_out"
echo "$ps_out" | grep -q "cpu_ns=[1-9][0-9]* mem_ws=[0-9]* containers=1" || fail "pod stats: $ps_out"
mark POD-STATS-OK

out=$(cri-client update "$cid" 67108864) || fail "UpdateContainerResources: $out"
out=$(cri-client exec "$cid" 30 cat /sys/fs/cgroup/memory.max) || fail "exec cat memory.max: $out"
[ "$out" = 'CRI exec exit=0 stdout=67108864\n stderr=' ] || fail "memory.max after update: $out"
st=$(cri-client cstats "$cid")
echo "$st"
mark UPDATE-OK "$(echo "$st" | sed -n 's/.*\(mem_avail=[0-9]*\).*/\1/p')"

# ---- the pod's domain destroyed behind the daemon's back: stats and update still answer at once,
# and stop/remove still take the network down ----
xl destroy "vgpu-$(echo "$id" | cut -c1-12)-web" || fail "xl destroy"
t3=$(up)
st=$(cri-client -t 60 cstats "$cid") || fail "ContainerStats of a pod without its domain: $st"
echo "$st"
out=$(cri-client -t 60 update "$cid" 33554432)
echo "$out"
case $out in "CRI error "*"code=9 "*) ;; *) fail "UpdateContainerResources without the domain: $out" ;; esac
mark GONE-DOMAIN-STATS-OK "s=$(dt "$t3" "$(up)")"

# ---- stop and remove: nothing of the network is left ----
t2=$(up)
for p in "$id" "$id2"; do
	out=$(cri-client stop "$p") || fail "StopPodSandbox: $out"
	out=$(cri-client remove "$p") || fail "RemovePodSandbox: $out"
done
mark NET-PODS-REMOVED "s=$(dt "$t2" "$(up)")"
ip link
left=$(ip -o link | grep -E ' (vif[0-9]|veth)' || true)
[ -z "$left" ] || fail "links left: $left"
[ -z "$(ls /run/vgpu-cri/netns 2>/dev/null)" ] || fail "netns left: $(ls /run/vgpu-cri/netns)"
leases=$(ls /var/lib/cni/networks/xenpods 2>/dev/null | grep '^10\.' || true)
[ -z "$leases" ] || fail "IPAM leases left: $leases"
[ -z "$(ls /var/lib/vgpu-cri/cni 2>/dev/null)" ] || fail "CNI cache left: $(ls /var/lib/vgpu-cri/cni)"
[ "$(xl list | wc -l)" = 2 ] || fail "domains left: $(xl list)"
mark NET-NOTHING-LEFT
stop_daemon
for f in /var/log/xen/console/guest-*.log; do echo "--- $f"; grep -E 'network|container .*: (update|create)' "$f"; done
exit 0
