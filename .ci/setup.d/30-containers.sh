#!/usr/bin/env bash
# Container runtimes for the container tests (tests/live/test_containers_*.py), on a machine without
# systemd: a running dockerd (default options: docker-proxy holds published ports), a tiny busybox
# image for Docker, rootful Podman and one rootless Podman user, built from the local busybox-static
# binary (no image registry needed). Idempotent; when everything is in place it only checks (about 1 s).
# Must run as root. The tests read the names below from the same defaults (PORTBOOK_TEST_IMAGE,
# PORTBOOK_TEST_ROOTLESS_USER).
set -euo pipefail

IMAGE=${PORTBOOK_TEST_IMAGE:-portbook-test/busybox}
RL_USER=${PORTBOOK_TEST_ROOTLESS_USER:-portbook-rl}
STATE=/var/lib/portbook-test
ROOTFS=$STATE/rootfs
DOCKERD_LOG=/var/log/portbook-dockerd.log

say() { printf '    %s\n' "$*"; }

# --- dockerd: started by hand (no systemd); a running daemon is left as it is --------------------
if ! docker info >/dev/null 2>&1; then
    if pgrep -x dockerd >/dev/null; then
        say "dockerd is running but does not answer yet; waiting"
    else
        say "starting dockerd (log $DOCKERD_LOG)"
        setsid -f dockerd >>"$DOCKERD_LOG" 2>&1 </dev/null
    fi
    for _ in $(seq 1 150); do docker info >/dev/null 2>&1 && break; sleep 0.2; done
    docker info >/dev/null 2>&1 || { echo "dockerd did not come up; see $DOCKERD_LOG" >&2; exit 1; }
fi

# --- busybox rootfs: /bin/busybox, its applets, a page for httpd ------------------------------------
if ! [ -x "$ROOTFS/bin/busybox" ] || ! [ -e "$ROOTFS/bin/httpd" ] || ! [ -e "$ROOTFS/www/index.html" ]; then
    say "building $ROOTFS"
    rm -rf "$ROOTFS"
    mkdir -p "$ROOTFS"/{bin,etc,tmp,www,proc,sys,dev}
    cp /bin/busybox "$ROOTFS/bin/busybox"
    for applet in $("$ROOTFS/bin/busybox" --list); do
        [ "$applet" = busybox ] || ln -sf busybox "$ROOTFS/bin/$applet"
    done
    echo 'root:x:0:0:root:/:/bin/sh' >"$ROOTFS/etc/passwd"
    echo 'root:x:0:' >"$ROOTFS/etc/group"
    echo 'hello from portbook' >"$ROOTFS/www/index.html"
    chmod 1777 "$ROOTFS/tmp"
    chmod -R a+rX "$STATE"
fi

docker image inspect "$IMAGE" >/dev/null 2>&1 || {
    say "importing $IMAGE into docker"
    tar -C "$ROOTFS" -c . | docker import - "$IMAGE" >/dev/null
}
podman image exists "$IMAGE" || {
    say "importing $IMAGE into rootful podman"
    tar -C "$ROOTFS" -c . | podman import -q - "$IMAGE" >/dev/null
}

# --- rootless podman for $RL_USER -------------------------------------------------------------------
if ! id "$RL_USER" >/dev/null 2>&1; then
    say "creating user $RL_USER"
    useradd -m -s /bin/bash "$RL_USER"
fi
for f in /etc/subuid /etc/subgid; do
    touch "$f"
    if ! grep -q "^$RL_USER:" "$f"; then
        start=$(awk -F: 'BEGIN{m=100000} {e=$2+$3; if (e>m) m=e} END{print m}' "$f")
        echo "$RL_USER:$start:65536" >>"$f"
    fi
done
RL_UID=$(id -u "$RL_USER")
# slirp4netns opens /dev/net/tun as the user; the node is 0600 on some machines and there is no
# setfacl here, so it is opened to everyone (acceptable on a throwaway CI machine).
[ -c /dev/net/tun ] || { mkdir -p /dev/net; mknod /dev/net/tun c 10 200; }
chmod 0666 /dev/net/tun
# Podman records its run root in its database on first use: XDG_RUNTIME_DIR must exist before that.
XDG=/run/user/$RL_UID
install -d -m 0700 -o "$RL_USER" -g "$(id -gn "$RL_USER")" "$XDG"
as_user() { su - "$RL_USER" -c "export XDG_RUNTIME_DIR=$XDG; $*"; }
runroot=$(as_user "podman info --format '{{.Store.RunRoot}}'" 2>/dev/null || true)
if [ "$runroot" != "$XDG/containers" ]; then
    say "resetting $RL_USER's podman storage (run root was '$runroot')"
    as_user "podman system reset -f" >/dev/null 2>&1 || true
fi
as_user "podman image exists $IMAGE" || {
    say "importing $IMAGE into $RL_USER's rootless podman"
    as_user "tar -C $ROOTFS -c . | podman import -q - $IMAGE >/dev/null"
}
say "containers ready: dockerd pid $(pgrep -x dockerd | head -n1), rootless user $RL_USER ($RL_UID)"
