#!/bin/bash
# Fetch the guest kernel for `--runtime vm`: Debian's cloud kernel package, downloaded and unpacked (never
# installed) into a directory laid out like the package: boot/vmlinuz-<ver> and lib/modules/<ver>/.
#
#   scripts/fetch-kernel.sh [DEST]      DEST defaults to $HYPR_DATA_DIR/kernel (HYPR_DATA_DIR: /var/lib/hypr)
#
# Idempotent: an already unpacked kernel is kept and nothing is downloaded. When HYPR_KERNEL is set it names a
# kernel directory of that layout to use instead; the script only checks it.
set -euo pipefail

# A kernel with the modules the guest init loads (vm_kernel.MODULE_PATHS; these three are the ones older hypr did not
# need: the image disk, its file system and the overlay over it).
have_kernel() {
	local m
	compgen -G "$1/boot/vmlinuz-*" >/dev/null || return 1
	for m in drivers/block/virtio_blk.ko fs/erofs/erofs.ko fs/overlayfs/overlay.ko; do
		compgen -G "$1/lib/modules/*/kernel/$m" >/dev/null || return 1
	done
}

if [ -n "${HYPR_KERNEL:-}" ]; then
	have_kernel "$HYPR_KERNEL" || {
		echo "HYPR_KERNEL=$HYPR_KERNEL: no boot/vmlinuz-* with lib/modules/*/kernel/{virtio_blk,erofs,overlay}" >&2
		exit 1
	}
	echo "$HYPR_KERNEL"
	exit 0
fi

dest=${1:-${HYPR_DATA_DIR:-/var/lib/hypr}/kernel}
if have_kernel "$dest"; then
	echo "$dest"
	exit 0
fi

# The meta-package names the current versioned package; apt-cache needs package lists.
pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
if [ -z "$pkg" ]; then
	apt-get update -qq
	pkg=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
fi
[ -n "$pkg" ] || { echo "cannot find a linux-image-*-cloud-amd64 package" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get download -qq -o APT::Sandbox::User=root "$pkg")
mkdir -p "$work/root"
dpkg -x "$work"/"$pkg"_*.deb "$work/root"
mkdir -p "$(dirname "$dest")"
rm -rf "$dest.tmp"
mv "$work/root" "$dest.tmp"
mv -T "$dest.tmp" "$dest"
echo "$dest"
