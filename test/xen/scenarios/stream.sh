#!/bin/sh
# Scenario "stream": Exec and Attach of containers in a xen pod through the daemon's streaming
# server, as kubelet/crictl use them (cri-client's WebSocket v5.channel.k8s.io client): the agent
# serves each session on a vchan of its own (cri/agent/agent_stream.c), the daemon pumps it into
# the session's pipes (cri/xen_stream.c). Exec with stdin (cat echoes), exit codes, a tty with a
# resize (`stty size`), a client that vanishes (the process dies in the guest), Attach to a
# container created with stdin (two sessions one after the other, the container keeps running,
# then one that ends when the container exits; stdin_once: ending stdin gives the container EOF),
# Attach asking for stdin the container lacks refused; a container with a terminal (CRI tty: runc
# --console-socket in the guest, the pty's output in its log; two tty attach sessions at once, one
# typing a line and resizing, both seeing the answer and the new `stty size`; attach with the wrong
# tty flag refused both ways; the last session ends with the container's exit); PortForward into the pod (the agent connects
# to 127.0.0.1:PORT in the guest, a vchan per connection: a ~300 KB download and an echo checked by
# md5, two connections at once, a port nobody listens on reported as the error stream's text at
# once); the daemon's fds and threads back to where they were; a stream and a port-forward open
# while their pod is stopped end, and a stream whose domain is destroyed behind the daemon's back
# ends with an error (and its pages are unmapped: no dying domain); nothing left.
# expect: VGPU-XEN DAEMON-UP
# expect: VGPU-XEN POD-READY web
# expect: VGPU-XEN CTRS-RUNNING
# expect: VGPU-XEN EXEC-STDIN-OK
# expect: VGPU-XEN EXEC-EXIT-CODE-OK
# expect: VGPU-XEN EXEC-TTY-RESIZE-OK
# expect: VGPU-XEN EXEC-KILLED-ON-LEAVE
# expect: VGPU-XEN ATTACH-OK
# expect: VGPU-XEN TTY-CTR-LOG-OK
# expect: VGPU-XEN TTY-ATTACH-REFUSED-OK
# expect: VGPU-XEN TTY-ATTACH-OK
# expect: VGPU-XEN TTY-RESIZE-OK
# expect: VGPU-XEN TTY-EXIT-OK
# expect: VGPU-XEN PORTFWD-OK
# expect: VGPU-XEN PORTFWD-TWO-OK
# expect: VGPU-XEN PORTFWD-REFUSED-OK
# expect: VGPU-XEN ATTACH-ENDS-ON-EXIT
# expect: VGPU-XEN ATTACH-STDIN-ONCE-OK
# expect: VGPU-XEN FDS-RELEASED
# expect: VGPU-XEN STREAM-ENDS-WITH-POD
# expect: VGPU-XEN STREAM-ENDS-WITH-DOMAIN
# expect: VGPU-XEN NOTHING-LEFT
. /vgpu/scenarios/daemon-lib.sh
setup_xen_containers
img=$(cat /vgpu/image-ref)
start_daemon
mark DAEMON-UP "pid=$daemon_pid image=$img"
fds() { ls /proc/$daemon_pid/fd | wc -l; }
tasks() { ls /proc/$daemon_pid/task | wc -l; }

t0=$(up)
out=$(cri-client run-pod web xen) || fail "RunPodSandbox: $out"
id=$(echo "$out" | sed -n 's/^CRI pod //p')
[ -n "$id" ] || fail "no pod id in: $out"
mark POD-READY web "id=$id run_pod_s=$(dt "$t0" "$(up)")"
dom=vgpu-$(echo "$id" | cut -c1-12)-web

# ---- a plain container to exec in, and one created with stdin to attach to ----
out=$(cri-client create "$id" box "$img" sleep 3600) || fail "create box: $out"
cid=$(echo "$out" | sed -n 's/^CRI container //p')
cri-client start "$cid" >/dev/null || fail "start box"
out=$(CRI_STDIN=1 cri-client create "$id" echo "$img" sh -c \
	'while read l; do [ "$l" = quit ] && exit 0; echo "got $l"; echo "err $l" >&2; done') || fail "create echo: $out"
cid2=$(echo "$out" | sed -n 's/^CRI container //p')
cri-client start "$cid2" >/dev/null || fail "start echo"
# TCP servers for port-forward: 8081 serves a 300 KiB random file, 8080 echoes (busybox nc, a
# process per connection)
out=$(cri-client create "$id" srv "$img" sh -c \
	'head -c 307200 /dev/urandom >/blob; nc -ll -p 8081 -e cat /blob & exec nc -ll -p 8080 -e cat') ||
	fail "create srv: $out"
cid5=$(echo "$out" | sed -n 's/^CRI container //p')
cri-client start "$cid5" >/dev/null || fail "start srv"
# a container with a terminal (and stdin) that answers lines and prints its terminal's size
out=$(CRI_TTY=1 CRI_STDIN=1 cri-client create "$id" term "$img" sh -c \
	'stty size; echo tty=$(tty); while read x; do [ "$x" = quit ] && exit 3; echo got-$x; stty size; done') ||
	fail "create term: $out"
cid6=$(echo "$out" | sed -n 's/^CRI container //p')
cri-client start "$cid6" >/dev/null || fail "start term"
cri-client cstatus "$cid2" | grep -q RUNNING || fail "echo not running"
mark CTRS-RUNNING "box=$cid echo=$cid2 srv=$cid5 term=$cid6"
sleep 2
base_fds=$(fds)
base_tasks=$(tasks)
echo "daemon fds=$base_fds tasks=$base_tasks before any stream"

# ---- exec: stdin through cat and back ----
t1=$(up)
out=$(cri-client stream exec "$cid" -i 'hello xen\nline two\n' -c cat) || fail "exec cat: $out"
echo "$out"
[ "$out" = 'CRI stream exit=0 stdout=hello xen\nline two\n stderr=' ] || fail "exec cat: $out"
mark EXEC-STDIN-OK "exec_s=$(dt "$t1" "$(up)")"

# ---- exec: stdout, stderr and the exit code ----
t2=$(up)
out=$(cri-client stream exec "$cid" sh -c 'echo out; echo err >&2; exit 7') || fail "exec exit 7: $out"
echo "$out"
[ "$out" = 'CRI stream exit=7 stdout=out\n stderr=err\n' ] || fail "exec exit 7: $out"
mark EXEC-EXIT-CODE-OK "exec_s=$(dt "$t2" "$(up)")"

# ---- exec with a tty: the resize reaches the container's terminal ----
t3=$(up)
out=$(cri-client stream exec "$cid" -T -r 100x30 -i 'go\n' sh -c 'read x; stty size; tty') || fail "exec tty: $out"
echo "$out"
echo "$out" | grep -q 'CRI stream exit=0 stdout=.*30 100\\r\\n/dev/pts/' || fail "exec tty: $out"
mark EXEC-TTY-RESIZE-OK "exec_s=$(dt "$t3" "$(up)")"

# ---- a client that vanishes: its process is killed in the guest ----
t4=$(up)
out=$(cri-client stream exec "$cid" -l started sh -c 'echo started; exec sleep 1001') || fail "exec leave: $out"
echo "$out"
echo "$out" | grep -q '^CRI stream left' || fail "exec leave: $out"
n=0
while ! out=$(cri-client exec "$cid" 10 sh -c 'ps | grep -c "[s]leep 1001"') || [ "$out" != 'CRI exec exit=1 stdout=0\n stderr=' ]; do
	n=$((n + 1))
	[ $n -gt 40 ] && fail "sleep 1001 still running after its client left: $out"
	sleep 0.5
done
mark EXEC-KILLED-ON-LEAVE "after_s=$(dt "$t4" "$(up)")"

# ---- attach: stdin reaches the container, its output comes back; twice; it keeps running ----
t5=$(up)
out=$(cri-client stream attach "$cid2" -i 'one\n' -l 'got one') || fail "attach one: $out"
echo "$out"
echo "$out" | grep -q '^CRI stream left stdout=got one' || fail "attach one: $out"
out=$(cri-client stream attach "$cid2" -i 'two\n' -l 'got two') || fail "attach two: $out"
echo "$out"
echo "$out" | grep -q '^CRI stream left stdout=got two' || fail "attach two: $out"
cri-client cstatus "$cid2" | grep -q RUNNING || fail "echo not running after detach"
out=$(cri-client stream attach "$cid" -S)
echo "$out"
echo "$out" | grep -q 'code=3 .*created without stdin' || fail "attach with stdin to box: $out"
mark ATTACH-OK "attach_s=$(dt "$t5" "$(up)")"

# ---- a container with a terminal: its log has the pty's output (as stdout records) ----
tlog=$(cri-client cstatus "$cid6" | sed -n 's/.* log=//p')
n=0
while ! grep -q ' stdout [FP] tty=/dev/pts/0' "$tlog" 2>/dev/null; do
	n=$((n + 1))
	[ $n -gt 60 ] && fail "term's log $tlog: $(cat "$tlog" 2>&1)"
	sleep 0.5
done
cat "$tlog"
mark TTY-CTR-LOG-OK "log=$tlog"
# attach with the wrong tty flag is refused, both ways
out=$(cri-client stream attach "$cid6" -S)
echo "$out"
echo "$out" | grep -q 'code=3 .*tty=false requested, but the container was created with tty=true' ||
	fail "attach without tty to term: $out"
out=$(cri-client stream attach "$cid2" -T -S)
echo "$out"
echo "$out" | grep -q 'code=3 .*tty=true requested, but the container was created with tty=false' ||
	fail "attach with tty to echo: $out"
mark TTY-ATTACH-REFUSED-OK
# two sessions at once: the first only watches; the second types a line after a resize; both see
# the answer and the new size
t14=$(up)
attached=$(grep -c "attach stream to domain .* (tty=1) open" $dlog)
cri-client stream attach "$cid6" -T -l '30 100' -w 120 >/tmp/tty1.out 2>&1 &
bgt=$!
n=0
while [ "$(grep -c "attach stream to domain .* (tty=1) open" $dlog)" -le "$attached" ]; do
	n=$((n + 1))
	[ $n -gt 60 ] && fail "first tty attach did not start: $(cat /tmp/tty1.out)"
	sleep 0.5
done
out=$(cri-client stream attach "$cid6" -T -r 100x30 -i 'two\n' -l '30 100' -w 120) || fail "tty attach: $out"
echo "$out"
echo "$out" | grep -q '^CRI stream left stdout=.*got-two\\r\\n30 100' || fail "tty attach: $out"
n=0
while kill -0 $bgt 2>/dev/null; do
	n=$((n + 1))
	[ $n -gt 60 ] && fail "first tty attach still waiting: $(cat /tmp/tty1.out)"
	sleep 0.5
done
cat /tmp/tty1.out
grep -q '^CRI stream left stdout=.*got-two\\r\\n30 100' /tmp/tty1.out || fail "first tty attach: $(cat /tmp/tty1.out)"
mark TTY-ATTACH-OK "attach_s=$(dt "$t14" "$(up)") sessions=2"
# the daemon copies the guest's log records every few seconds: wait for them
n=0
while ! grep -q ' stdout [FP] 30 100' "$tlog"; do
	n=$((n + 1))
	[ $n -gt 40 ] && fail "the resize is not in term's log after 20 s: $(cat "$tlog")"
	sleep 0.5
done
mark TTY-RESIZE-OK "stty_size=30x100"
# the container exits while attached: the session ends, the container's exit code is kept
t15=$(up)
out=$(cri-client stream attach "$cid6" -T -i 'quit\n' -w 120) || fail "tty attach quit: $out"
echo "$out"
echo "$out" | grep -q '^CRI stream exit=0 stdout=quit\\r\\n' || fail "tty attach quit: $out"
n=0
while ! cri-client cstatus "$cid6" | grep -q "EXITED exit=3"; do
	n=$((n + 1))
	[ $n -gt 60 ] && fail "term not exited with 3: $(cri-client cstatus "$cid6")"
	sleep 0.5
done
mark TTY-EXIT-OK "attach_s=$(dt "$t15" "$(up)")"

# ---- port-forward: the agent connects to 127.0.0.1:PORT in the guest, bytes both ways ----
n=0
while ! out=$(cri-client exec "$cid5" 10 sh -c 'md5sum /blob; netstat -ltn | grep -c ":808[01] "') ||
	! echo "$out" | grep -q 'stdout=[0-9a-f]*  /blob\\n2\\n'; do
	n=$((n + 1))
	[ $n -gt 40 ] && fail "srv not listening: $out"
	sleep 0.5
done
blob_md5=$(echo "$out" | sed -n 's/.*stdout=\([0-9a-f]*\) .*/\1/p')
head -c 300000 /dev/urandom >/tmp/pf.in
in_md5=$(md5sum </tmp/pf.in | cut -d' ' -f1)
pf_opened() { grep -c "port-forward to port $1 in domain .* open after" $dlog; }
t10=$(up)
out=$(cri-client pf "$id" 8081 -o /tmp/pf.get) || fail "pf get: $out"
echo "$out"
echo "$out" | grep -q '^CRI pf conn=0 bytes=307200 .* error=$' || fail "pf get: $out"
[ "$(md5sum </tmp/pf.get.0 | cut -d' ' -f1)" = "$blob_md5" ] || fail "pf get: md5 differs from the guest's $blob_md5"
t11=$(up)
out=$(cri-client pf "$id" 8080 -i /tmp/pf.in -o /tmp/pf.echo) || fail "pf echo: $out"
echo "$out"
echo "$out" | grep -q '^CRI pf conn=0 bytes=300000 .* error=$' || fail "pf echo: $out"
[ "$(md5sum </tmp/pf.echo.0 | cut -d' ' -f1)" = "$in_md5" ] || fail "pf echo: md5 differs"
mark PORTFWD-OK "get_s=$(dt "$t10" "$t11") echo_s=$(dt "$t11" "$(up)") get_bytes=307200 get_md5=$blob_md5 echo_bytes=300000 echo_md5=$in_md5"
# two connections at once in one port-forward session: a session (vchan, guest child) each
before=$(pf_opened 8080)
t12=$(up)
out=$(cri-client pf "$id" 8080 -n 2 -i /tmp/pf.in -o /tmp/pf.two) || fail "pf two: $out"
echo "$out"
[ "$(echo "$out" | grep -c '^CRI pf conn=[01] bytes=300000 .* error=$')" = 2 ] || fail "pf two: $out"
for k in 0 1; do
	[ "$(md5sum </tmp/pf.two.$k | cut -d' ' -f1)" = "$in_md5" ] || fail "pf two: connection $k: md5 differs"
done
[ "$(pf_opened 8080)" = $((before + 2)) ] || fail "pf two: $(pf_opened 8080) sessions opened (was $before)"
mark PORTFWD-TWO-OK "s=$(dt "$t12" "$(up)")"
grep "port-forward to port" $dlog | tail -n 8
# nothing listens on 9999: the client gets the error stream's text at once, no hang
t13=$(up)
out=$(cri-client pf "$id" 9999 -w 30) || fail "pf refused: $out"
echo "$out"
echo "$out" | grep -q '^CRI pf conn=0 bytes=0 .* error=error forwarding port 9999 to pod .*Connection refused' ||
	fail "pf refused: $out"
s13=$(dt "$t13" "$(up)")
[ "$(awk -v s="$s13" 'BEGIN{print (s < 15)}')" = 1 ] || fail "pf refused took $s13 s"
mark PORTFWD-REFUSED-OK "s=$s13"
# the container exits while attached: the session ends with Success
t6=$(up)
out=$(cri-client stream attach "$cid2" -i 'three\nquit\n') || fail "attach quit: $out"
echo "$out"
echo "$out" | grep -q '^CRI stream exit=0 stdout=got three\\n stderr=err three\\n' || fail "attach quit: $out"
n=0
while ! cri-client cstatus "$cid2" | grep -q "EXITED exit=0"; do
	n=$((n + 1))
	[ $n -gt 60 ] && fail "echo not exited: $(cri-client cstatus "$cid2")"
	sleep 0.5
done
mark ATTACH-ENDS-ON-EXIT "attach_s=$(dt "$t6" "$(up)")"

# ---- every session's fds and threads are gone ----
# (the log copy opens the log file for a moment every second: look again until it is not)
n=0
while now_fds=$(fds) && now_tasks=$(tasks) && { [ "$now_fds" -gt "$base_fds" ] || [ "$now_tasks" -gt "$base_tasks" ]; }; do
	n=$((n + 1))
	[ $n -gt 20 ] && { ls -l /proc/$daemon_pid/fd; fail "daemon fds $now_fds (was $base_fds), tasks $now_tasks (was $base_tasks)"; }
	sleep 0.5
done
# the stream children removed their vchans' xenstore keys (the guest's quota is not used up)
domid=$(xl domid "$dom") || fail "no domid for $dom"
keys=$(xenstore-list "/local/domain/$domid/data" 2>/dev/null | grep -c vgpu-stream)
[ "$keys" = 0 ] || fail "stream vchan keys left: $(xenstore-list "/local/domain/$domid/data")"
mark FDS-RELEASED "fds=$now_fds base=$base_fds tasks=$now_tasks base=$base_tasks stream_keys=$keys"
grep -E "stream to domain" $dlog | tail -n 12

# stdin_once: the first attach that ends its stdin closes the container's (cat reads EOF, exits)
out=$(CRI_STDIN=1 CRI_STDIN_ONCE=1 cri-client create "$id" once "$img" cat) || fail "create once: $out"
cid4=$(echo "$out" | sed -n 's/^CRI container //p')
cri-client start "$cid4" >/dev/null || fail "start once"
t9=$(up)
out=$(cri-client stream attach "$cid4" -i 'last words\n' -c) || fail "attach once: $out"
echo "$out"
echo "$out" | grep -q '^CRI stream exit=0 stdout=last words\\n stderr=$' || fail "attach once: $out"
n=0
while ! cri-client cstatus "$cid4" | grep -q "EXITED exit=0"; do
	n=$((n + 1))
	[ $n -gt 60 ] && fail "once not exited: $(cri-client cstatus "$cid4")"
	sleep 0.5
done
mark ATTACH-STDIN-ONCE-OK "attach_s=$(dt "$t9" "$(up)")"

# ---- a session open while its pod is stopped ends ----
opened=$(grep -c "exec stream to domain .* open" $dlog)
cri-client stream exec "$cid" -w 200 sh -c 'echo started; exec sleep 1002' >/tmp/bg.out 2>&1 &
bg=$!
n=0
while [ "$(grep -c "exec stream to domain .* open" $dlog)" -le "$opened" ]; do
	n=$((n + 1))
	[ $n -gt 60 ] && fail "background exec did not start: $(cat /tmp/bg.out)"
	sleep 0.5
done
# and a port-forward connection held open (never half-closed by the client)
before=$(pf_opened 8080)
cri-client pf "$id" 8080 -H -w 200 >/tmp/bgpf.out 2>&1 &
bgpf=$!
n=0
while [ "$(pf_opened 8080)" -le "$before" ]; do
	n=$((n + 1))
	[ $n -gt 60 ] && fail "background port-forward did not start: $(cat /tmp/bgpf.out)"
	sleep 0.5
done
sleep 2
t7=$(up)
cri-client stop "$id" >/dev/null || fail "StopPodSandbox"
t_stop=$(up)
n=0
while kill -0 $bg 2>/dev/null || kill -0 $bgpf 2>/dev/null; do
	n=$((n + 1))
	[ $n -gt 60 ] && fail "stream or port-forward still open 30 s after StopPodSandbox: $(cat /tmp/bg.out /tmp/bgpf.out)"
	sleep 0.5
done
cat /tmp/bg.out /tmp/bgpf.out
grep -q '^CRI stream exit=' /tmp/bg.out || fail "background stream: $(cat /tmp/bg.out)"
grep -q '^CRI pf conn=0 ' /tmp/bgpf.out || fail "background port-forward: $(cat /tmp/bgpf.out)"
grep "port-forward to port 8080 .* closed" $dlog | tail -n 1
mark STREAM-ENDS-WITH-POD "stop_s=$(dt "$t7" "$t_stop") ended_after_stop_s=$(dt "$t7" "$(up)")"

# ---- the guest vanishes under an open session (domain destroyed behind the daemon's back):
# the session ends with an error in bounded time and the daemon unmaps the stream's pages ----
out=$(cri-client run-pod web2 xen) || fail "RunPodSandbox web2: $out"
id2=$(echo "$out" | sed -n 's/^CRI pod //p')
out=$(cri-client create "$id2" sleeper "$img" sleep 3600) || fail "create sleeper: $out"
cid3=$(echo "$out" | sed -n 's/^CRI container //p')
cri-client start "$cid3" >/dev/null || fail "start sleeper"
opened=$(grep -c "exec stream to domain .* open" $dlog)
cri-client stream exec "$cid3" -w 200 sh -c 'echo started; exec sleep 1003' >/tmp/bg2.out 2>&1 &
bg=$!
n=0
while [ "$(grep -c "exec stream to domain .* open" $dlog)" -le "$opened" ]; do
	n=$((n + 1))
	[ $n -gt 60 ] && fail "exec in web2 did not start: $(cat /tmp/bg2.out)"
	sleep 0.5
done
sleep 2
t8=$(up)
xen-domctl destroy "vgpu-$(echo "$id2" | cut -c1-12)-web2" >/dev/null || fail "destroy web2 behind the daemon's back"
n=0
while kill -0 $bg 2>/dev/null; do
	n=$((n + 1))
	[ $n -gt 60 ] && fail "stream still open 30 s after its domain was destroyed"
	sleep 0.5
done
cat /tmp/bg2.out
grep -q "^CRI stream exit=-1 .*the pod's domain is gone" /tmp/bg2.out || fail "stream of a destroyed domain: $(cat /tmp/bg2.out)"
mark STREAM-ENDS-WITH-DOMAIN "ended_after_destroy_s=$(dt "$t8" "$(up)")"
cri-client stop "$id2" >/dev/null && cri-client cremove "$cid3" >/dev/null && cri-client remove "$id2" >/dev/null ||
	fail "remove web2"

cri-client cremove "$cid" && cri-client cremove "$cid2" && cri-client cremove "$cid4" && cri-client cremove "$cid5" &&
	cri-client cremove "$cid6" &&
	cri-client remove "$id" ||
	fail "remove"
cri-client list | grep -q "CRI list n=0" || fail "pods left"
[ "$(xl list | tail -n +2 | wc -l)" = 1 ] || fail "domains left (xl list)"
n=0 # a destroyed domain whose pages dom0 still maps stays "dying": libxl lists it, xl does not
while ! xen-domctl list | grep -q 'XENCTL domains=1$'; do
	n=$((n + 1))
	[ $n -gt 20 ] && { xen-domctl list; fail "domains left (libxl)"; }
	sleep 0.5
done
xenstore-list /local/domain | grep -qv '^0$' && fail "xenstore /local/domain has more than dom0"
[ -z "$(losetup -a)" ] || fail "loop devices left after the pod"
[ "$(tasks)" -le "$base_tasks" ] || fail "daemon threads left: $(tasks) (was $base_tasks)"
mark NOTHING-LEFT
echo "--- the agent in the guest (console log of $dom)"
grep "vgpu-agent:" "/var/log/xen/console/guest-$dom.log" | tail -n 20
stop_daemon
grep -E " (warn|error) " $dlog | head -n 20
exit 0
