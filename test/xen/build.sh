#!/usr/bin/env bash
# Build the Xen-under-QEMU test bed from Debian packages only: Xen 4.17, the Debian dom0/guest
# kernel, xen-utils/xenstored and their libraries, busybox, runc (guest), erofs-utils (dom0); a dom0
# initramfs with our daemon, its shared libraries, the test programs and an image store holding a
# busybox image (pulled by our daemon on the host from a local docker-registry, seed-image.py); a
# guest kernel + initramfs (vgpu-agent, runc, erofs and overlay modules). Nothing is installed on the
# host except the tools this script needs (QEMU, cpio, libxen-dev). Everything lands in a cache:
#   $VGPU_XEN_CACHE/debs/<hash of package=version list>/   downloaded .debs
#   $VGPU_XEN_CACHE/stage/<same hash>/                    the .debs extracted (dpkg-deb -x)
#   $VGPU_XEN_CACHE/artifacts/<hash of the rootfs trees>/ xen, vmlinux (dom0), dom0.cpio.zst (guest inside)
#   $VGPU_XEN_CACHE/current -> artifacts/<hash>
#   $VGPU_XEN_CACHE/seed/<hash of seed-image.py + busybox>/  the seeded image store (reused)
# The last line of stdout is the artifact directory. Env: VGPU_XEN_CACHE (/var/cache/vgpu-cri-xen),
# VGPU_XEN_BUILD_DIR (<repo>/build-xen: where the daemon is built with cmake).
set -euo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
here=$top/test/xen
CACHE=${VGPU_XEN_CACHE:-/var/cache/vgpu-cri-xen}
BUILD=${VGPU_XEN_BUILD_DIR:-$top/build-xen}
say() { echo "xen-build: $*" >&2; }
die() { echo "xen-build: ERROR: $*" >&2; exit 1; }
t_start=$(date +%s.%N)

# ---- host tools (only what building and booting the test bed needs) ----
host_pkgs=(qemu-system-x86 cpio xz-utils gzip zstd libxen-dev busybox-static bash util-linux python3 docker-registry)
missing=()
for p in "${host_pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	say "installing host tools: ${missing[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

# ---- Debian packages for dom0 and the guest, pinned by the candidate versions ----
kpkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
[ -n "$kpkg" ] || die "cannot resolve linux-image-amd64 to a versioned kernel package"
KV=${kpkg#linux-image-}
debs=(xen-hypervisor-4.17-amd64 xen-utils-4.17 xen-utils-common xenstore-utils libxenstore4 libxenmisc4.17
      libxencall1 libxendevicemodel1 libxenevtchn1 libxenforeignmemory1 libxengnttab1 libxentoolcore1
      libxentoollog1 libxenhypfs1 libyajl2 busybox-static runc libseccomp2 erofs-utils containernetworking-plugins
      "$kpkg")
# one apt-cache call (loading the cache is the slow part)
pins=$(apt-cache policy "${debs[@]}" | awk '/^[^ ]/{sub(":$", "", $1); p=$1} /Candidate:/{print p "=" $2}')
for p in "${debs[@]}"; do
	grep -q "^$p=" <<<"$pins" || die "no candidate version for $p (apt-get update?)"
done
grep -q '=(none)$' <<<"$pins" && die "packages without a candidate: $(grep '=(none)$' <<<"$pins")"
pkg_hash=$(echo "$pins" | sha256sum | cut -c1-16)
D=$CACHE/debs/$pkg_hash
S=$CACHE/stage/$pkg_hash
if [ ! -e "$D/.complete" ]; then
	say "downloading ${#debs[@]} packages into $D"
	rm -rf "$D"; mkdir -p "$D"
	# apt-get download drops privileges to _apt: give it a directory it may write
	chown _apt "$D" 2>/dev/null || true
	# shellcheck disable=SC2046
	(cd "$D" && apt-get download -q $(echo "$pins") >&2)
	echo "$pins" > "$D/pins.txt"
	touch "$D/.complete"
fi
if [ ! -e "$S/.complete" ]; then
	say "extracting into $S"
	rm -rf "$S"; mkdir -p "$S"
	for d in "$D"/*.deb; do dpkg-deb -x "$d" "$S"; done
	zcat "$S/boot/xen-4.17-amd64.gz" > "$S/xen"  # QEMU's multiboot loader wants the plain ELF
	# The guest kernel as a gzipped ELF: libxl loads it ~2x faster than the xz bzImage.
	vz=$S/boot/vmlinuz-$KV
	off=$(grep -abo $'\xfd7zXZ' "$vz" | head -1 | cut -d: -f1)
	[ -n "$off" ] || die "no xz payload in $vz"
	{ tail -c +$((off + 1)) "$vz" | xz -dc --single-stream 2>/dev/null || true; } | gzip -1 > "$S/vmlinux.gz"
	[ "$(zcat "$S/vmlinux.gz" | head -c 4 | od -An -c | tr -d ' ')" = '177ELF' ] || die "vmlinux extraction failed"
	touch "$S/.complete"
fi
# dom0's kernel as a plain ELF: Xen unpacks the xz bzImage itself, ~13 s under TCG
[ -e "$S/vmlinux" ] || zcat "$S/vmlinux.gz" > "$S/vmlinux"
XB=/usr/lib/xen-4.17/bin
KM=$S/lib/modules/$KV/kernel

# ---- our binaries: the daemon (cmake) and the test programs (linked with cri/xen_*.c) ----
say "building vgpu-cri in $BUILD"
[ -e "$BUILD/CMakeCache.txt" ] || cmake -S "$top" -B "$BUILD" >&2
# (+ the shim for the guest and a driver-API test program for the GPU image: scenario `gpu`)
cmake --build "$BUILD" -j"$(nproc)" --target vgpu-cri vgpu gpu_vector_add >&2 || die "daemon build failed ($BUILD)"
B=$BUILD/xen-testbed
mkdir -p "$B"
cflags=(-O2 -g -Wall -Wextra -Werror -Wno-unused-parameter -Wno-format-truncation -D_GNU_SOURCE -Ulinux -Uunix)
# shellcheck disable=SC2046
gcc "${cflags[@]}" -I"$top/cri" -o "$B/xen-domctl" "$here/xen-domctl.c" "$top/cri/xen_domain.c" \
	"$top/cri/xen_config.c" "$top/cri/err.c" "$top/cri/log.c" "$top/cri/util.c" \
	$(pkg-config --libs xenlight xentoollog)
# static: the same binary runs in dom0 and in the guest's busybox initramfs
vchan_libs=(-lxenvchan -lxenstore -lxengnttab -lxenevtchn -lxentoolcore -lxentoollog -lpthread)
gcc "${cflags[@]}" -static -o "$B/vchan-check" "$here/vchan-check.c" "${vchan_libs[@]}"
# the guest agent (PID 1 of a pod's domU) and the test's daemon side of its protocol
gcc "${cflags[@]}" -static -I"$top/cri/agent" -o "$B/vgpu-agent" "$top/cri/agent/agent.c" \
	"$top/cri/agent/agent_proto.c" "$top/cri/agent/agent_ctr.c" "$top/cri/agent/agent_shepherd.c" \
	"$top/cri/monitor/attach_proto.c" \
	"$top/cri/agent/agent_log.c" "$top/cri/agent/agent_net.c" "$top/cri/agent/agent_stream.c" \
	"$top/cri/agent/agent_vol.c" "$top/cri/agent/agent_vol_proto.c" "${vchan_libs[@]}"
gcc "${cflags[@]}" -static -I"$top/cri" -o "$B/agent-check" "$here/agent-check.c" "$top/cri/agent/agent_proto.c" \
	"${vchan_libs[@]}"
# a CRI client for the pod scenario (gRPC core + the daemon's generated protobuf-c messages)
# shellcheck disable=SC2046
gcc "${cflags[@]}" -I"$BUILD/proto" -I"$top/cri" -o "$B/cri-client" "$here/cri-client.c" "$here/cri-stream.c" "$top/cri/cri_client.c" "$BUILD/proto/libvgpu_proto.a" \
	$(pkg-config --cflags --libs grpc libprotobuf-c)

# GPU pods on xen (scenario `gpu`): an image tree with a CUDA driver-API program from test/gpu,
# its PTX and its libraries (libcuda.so.1 is the shim, bind-mounted by the daemon), and the Xen
# transport's attack program (static: the guest side of idm/, no Xen library)
GT=$B/gpu-image
rm -rf "$GT"; mkdir -p "$GT/opt/gpu"
gcc "${cflags[@]}" -static -I"$top/idm" -o "$GT/opt/gpu/xen-idm-attack" "$here/xen-idm-attack.c" "$top/idm/proto.c" \
	"$top/idm/ring.c" "$top/idm/local.c" "$top/idm/xen_proto.c" "$top/idm/xen_guest.c" -lpthread
cp "$BUILD/test/gpu/vector_add" "$top/test/gpu/kernels.ptx" "$GT/opt/gpu/"
# the same kernels in an image bigger than one Xen transport message (256 KiB): staged in chunks
{ cat "$top/test/gpu/kernels.ptx"
  awk 'BEGIN { for (i = 0; i < 5000; i++) print "// padding: bigger than one message of the Xen transport" }'
} >"$GT/opt/gpu/kernels-big.ptx"
LD_LIBRARY_PATH=$BUILD/shim ldd "$GT/opt/gpu/vector_add" | awk '/=> \//{print $1, $3} /^\t\/lib/{print $1, $1}' |
while read -r soname lib; do
	[ "$soname" = libcuda.so.1 ] && continue
	case $lib in /*) mkdir -p "$GT$(dirname "$lib")"; cp -L "$lib" "$GT$lib" ;; esac
done

# ---- root filesystems ----
W=$CACHE/work
rm -rf "$W"; mkdir -p "$W"
base_tree() { # root: busybox, the xen device modules, vchan-check
	local R=$1
	mkdir -p "$R"/{bin,sbin,etc,dev,proc,sys,tmp,run,root,lib/modules,usr/bin,usr/sbin,var/log,var/lib,var/lock}
	cp "$S/bin/busybox" "$R/bin/busybox"
	for a in $("$S/bin/busybox" --list); do [ -e "$R/bin/$a" ] || ln -s busybox "$R/bin/$a"; done
	for m in xen-evtchn xen-gntdev xen-gntalloc xen-privcmd; do cp "$KM/drivers/xen/$m.ko" "$R/lib/modules/"; done
	cp "$KM/drivers/xen/xenfs/xenfs.ko" "$KM/drivers/block/xen-blkfront.ko" "$KM/drivers/net/xen-netfront.ko" \
		"$R/lib/modules/"
	cp "$B/vchan-check" "$R/bin/"
}
# copy the shared libraries of binaries: Debian's xen libraries from the stage, the rest from the host
copy_libs() { # root binaries...
	local R=$1 lib; shift
	for b in "$@"; do
		if LD_LIBRARY_PATH=$S/usr/lib/x86_64-linux-gnu ldd "$b" | grep -q 'not found'; then
			LD_LIBRARY_PATH=$S/usr/lib/x86_64-linux-gnu ldd "$b" >&2; die "unresolved libraries for $b"
		fi
		LD_LIBRARY_PATH=$S/usr/lib/x86_64-linux-gnu ldd "$b" | awk '/=> \//{print $3} /^\t\/lib/{print $1}' |
		while read -r lib; do
			case $lib in
			"$S"/*) mkdir -p "$R/usr/lib/x86_64-linux-gnu"; cp -L "$lib" "$R/usr/lib/x86_64-linux-gnu/" ;;
			*) mkdir -p "$R$(dirname "$lib")"; cp -L "$lib" "$R$lib" ;;
			esac
		done
	done
}

G=$W/guest
base_tree "$G"
install -m 755 "$here/guest-init" "$G/init"
install -m 755 "$B/vgpu-agent" "$G/sbin/vgpu-agent"
# containers in the guest: Debian's runc (+ libseccomp, libc), erofs (image disks) and overlay
install -m 755 "$S/usr/sbin/runc" "$G/usr/sbin/runc"
# GPU pods: the shim, bind-mounted into their containers as libcuda.so.1 (cri/gpu.h VGPU_XEN_GUEST_SHIM)
install -D -m 755 "$BUILD/shim/libvgpu.so" "$G/usr/lib/vgpu/libvgpu.so"
copy_libs "$G" "$G/usr/sbin/runc"
cp "$KM/crypto/crc32c_generic.ko" "$KM/lib/libcrc32c.ko" "$KM/fs/erofs/erofs.ko" "$KM/fs/overlayfs/overlay.ko" \
	"$G/lib/modules/"
(cd "$G" && find . | LC_ALL=C sort | cpio -H newc -o --quiet -R 0:0 | gzip -1 > "$W/guest.cpio.gz")

R=$W/dom0
base_tree "$R"
install -m 755 "$here/dom0-init" "$R/init"
mkdir -p "$R$XB" "$R/etc/xen" "$R/var/lib/xen" "$R/var/log/xen/console" "$R/run/xen" "$R/var/run" "$R/vgpu/scenarios" \
	"$R/opt/vgpu/bin"
for b in xl xenstored xenconsoled xenconsole xen-init-dom0; do cp "$S$XB/$b" "$R$XB/"; done
for b in xl xenconsole; do ln -sf "$XB/$b" "$R/usr/sbin/$b"; done
cp "$S"/usr/bin/xenstore* "$R/usr/bin/"
cp -a "$S/etc/xen/scripts" "$R/etc/xen/"
cp "$S/etc/xen/xl.conf" "$R/etc/xen/"
# hotplug scripts (disks, vifs) need real bash, flock and GNU stat
rm -f "$R/bin/bash" "$R/bin/stat"
cp /bin/bash "$R/bin/bash"; cp /usr/bin/flock "$R/usr/bin/flock"; cp /usr/bin/stat "$R/bin/stat"
for m in block/xen-blkback/xen-blkback net/xen-netback/xen-netback block/loop; do cp "$KM/drivers/$m.ko" "$R/lib/modules/"; done
cp "$KM/net/llc/llc.ko" "$KM/net/802/stp.ko" "$KM/net/bridge/bridge.ko" "$R/lib/modules/"
# the pod network of xen pods: CNI's bridge + host-local + loopback (veth pairs), and the tc ingress
# redirects that join a pod's vif to its CNI interface (docs/networking.md)
cp "$KM/drivers/net/veth.ko" "$KM/net/sched/sch_ingress.ko" "$KM/net/sched/cls_matchall.ko" \
	"$KM/net/sched/act_mirred.ko" "$R/lib/modules/"
mkdir -p "$R/usr/lib/cni"
for p in bridge host-local loopback; do install -m 755 "$S/usr/lib/cni/$p" "$R/usr/lib/cni/$p"; done
copy_libs "$R" "$R/usr/lib/cni/bridge"
cp "$BUILD/cri/vgpu-cri" "$B/xen-domctl" "$B/agent-check" "$B/cri-client" "$R/opt/vgpu/bin/"
copy_libs "$R" "$R$XB/xl" "$R$XB/xenstored" "$R$XB/xenconsoled" "$R$XB/xen-init-dom0" "$R/usr/bin/xenstore" \
	"$R/bin/bash" "$R/usr/bin/flock" "$R/bin/stat" "$R/opt/vgpu/bin/vgpu-cri" "$R/opt/vgpu/bin/xen-domctl" \
	"$R/opt/vgpu/bin/cri-client"
# xl aborts without libgcc_s (pthread_cancel unwinding loads it at run time, ldd does not show it)
cp -L /lib/x86_64-linux-gnu/libgcc_s.so.1 "$R/lib/x86_64-linux-gnu/"
cp "$here"/scenarios/*.sh "$R/vgpu/scenarios/"
# containers in xen pods: mkfs.erofs makes the image disks; a busybox image in the daemon's store
install -m 755 "$S/usr/bin/mkfs.erofs" "$R/usr/bin/mkfs.erofs"
copy_libs "$R" "$R/usr/bin/mkfs.erofs"
seed_hash=$( { cat "$here/seed-image.py" "$top/test/integration/registry.py" /bin/busybox;
	tar -C "$GT" --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -cf - .; } | sha256sum | cut -c1-16)
SEED=$CACHE/seed/$seed_hash
if [ ! -e "$SEED/.complete" ]; then
	say "seeding a busybox image from a local registry into $SEED"
	rm -rf "$SEED"; mkdir -p "$SEED"
	python3 "$here/seed-image.py" "$BUILD/cri/vgpu-cri" "$B/cri-client" "$SEED/work" "$GT" >&2 || die "seeding the image failed"
	mv "$SEED/work/state/images" "$SEED/images"; cp "$SEED/work/image-ref" "$SEED/image-ref"
	cp "$SEED/work/image-ref-gpu" "$SEED/image-ref-gpu"
	rm -rf "$SEED/work"; rm -rf "$SEED/images/tmp"; mkdir -p "$SEED/images/tmp"
	touch "$SEED/.complete"
fi
mkdir -p "$R/var/lib/vgpu-cri"
cp -a "$SEED/images" "$R/var/lib/vgpu-cri/images"
cp "$SEED/image-ref" "$R/vgpu/image-ref"
cp "$SEED/image-ref-gpu" "$R/vgpu/image-ref-gpu"
mkdir -p "$R/boot"
cp "$S/vmlinux.gz" "$R/boot/guest-vmlinux.gz"
cp "$W/guest.cpio.gz" "$R/boot/guest.cpio.gz"

# ---- content hash of everything that boots, then the artifacts ----
layout=v2-zstd-elf  # bump when the artifact layout or packing changes
tree_hash=$( { echo "$layout $pins"; cat "$S/xen" "$S/vmlinux" | sha256sum;
	tar -C "$R" --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -cf - . | sha256sum; } |
	sha256sum | cut -c1-16)
A=$CACHE/artifacts/$tree_hash
if [ ! -e "$A/.complete" ]; then
	say "packing artifacts $A"
	rm -rf "$A"; mkdir -p "$A"
	cp "$S/xen" "$A/xen"
	cp "$S/vmlinux" "$A/vmlinux"
	# zstd: the dom0 kernel unpacks it in ~half the time of gzip under TCG (docs/xen-testing.md)
	(cd "$R" && find . | LC_ALL=C sort | cpio -H newc -o --quiet -R 0:0 | zstd -q -3 -T0 > "$A/dom0.cpio.zst")
	{ echo "$pins"; echo "kernel=$KV"; echo "built=$(date -u +%FT%TZ)"; echo "git=$(git -C "$top" rev-parse --short HEAD 2>/dev/null || echo none)"; } > "$A/manifest.txt"
	touch "$A/.complete"
else
	say "artifacts cached: $A"
fi
ln -sfn "artifacts/$tree_hash" "$CACHE/current"
rm -rf "$W"
say "done in $(awk -v a="$t_start" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}') s: $(du -sh "$A/dom0.cpio.zst" | cut -f1) dom0 initramfs"
echo "$A"
