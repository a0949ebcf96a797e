#!/bin/sh
# Builds the guest of the QEMU end-to-end tests (vcac_tests::guest::guest_image):
#
#   OUT/vmlinuz         Debian's kernel, from `apt-get download` of the
#                       package linux-image-amd64 depends on (the package
#                       is kept in OUT for the next build)
#   OUT/initramfs.cpio  busybox, this machine's own pcscd, libccid,
#                       opensc-tool, pkcs11-tool, opensc-pkcs11.so and every
#                       library they load, the kernel's USB modules (UHCI
#                       and xHCI), tests/src/guest-lib.sh as
#                       /lib/vcac-guest.sh and guest-init.sh as /init
#
# usage: build-guest.sh OUT
# A local kernel package can be given with VCAC_GUEST_KERNEL_DEB=/path.deb.
set -eu

out=$1
here=$(cd "$(dirname "$0")" && pwd)
work="$out/work"
rm -rf "$work"
mkdir -p "$work"
chmod 755 "$work"

need() {
    for f in "$@"; do
        [ -e "$f" ] || { echo "build-guest: missing $f" >&2; exit 3; }
    done
}
need /bin/busybox /usr/sbin/pcscd /usr/bin/opensc-tool /usr/bin/pkcs11-tool \
    /usr/lib/x86_64-linux-gnu/opensc-pkcs11.so /usr/lib/x86_64-linux-gnu/libpcsclite.so.1 \
    /usr/lib/pcsc/drivers/ifd-ccid.bundle/Contents/Linux/libccid.so \
    /usr/lib/x86_64-linux-gnu/libgcc_s.so.1 /usr/bin/date

# --- the kernel -------------------------------------------------------------
if [ -n "${VCAC_GUEST_KERNEL_DEB:-}" ]; then
    deb=$VCAC_GUEST_KERNEL_DEB
else
    pkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
        awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
    [ -n "$pkg" ] || {
        echo "build-guest: apt-cache knows no linux-image-amd64 (run apt-get update)" >&2
        exit 3
    }
    deb=$(ls "$out/${pkg}"_*.deb 2>/dev/null | head -n 1)
    if [ -z "$deb" ]; then
        (cd "$work" && apt-get download "$pkg" >/dev/null 2>&1) || {
            echo "build-guest: apt-get download $pkg failed" >&2
            exit 3
        }
        rm -f "$out"/linux-image-*.deb
        mv "$work"/linux-image-*.deb "$out/"
        deb=$(ls "$out/${pkg}"_*.deb)
    fi
fi
echo "build-guest: kernel package $(basename "$deb")"
mkdir -p "$work/kernel"
# dpkg -x, limited to the few files the guest needs.
dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$work/kernel" --wildcards \
    './boot/vmlinuz-*' \
    './lib/modules/*/kernel/drivers/usb/common/usb-common.ko' \
    './lib/modules/*/kernel/drivers/usb/core/usbcore.ko' \
    './lib/modules/*/kernel/drivers/usb/host/uhci-hcd.ko' \
    './lib/modules/*/kernel/drivers/usb/host/xhci-hcd.ko' \
    './lib/modules/*/kernel/drivers/usb/host/xhci-pci.ko'
cp "$work"/kernel/boot/vmlinuz-* "$work/vmlinuz"

# --- the root file system ---------------------------------------------------
root="$work/root"
mkdir -p "$root/usr/bin" "$root/usr/sbin" "$root/usr/lib/x86_64-linux-gnu" \
    "$root/usr/lib64" "$root/usr/lib/pcsc/drivers" "$root/etc" "$root/modules" \
    "$root/proc" "$root/sys" "$root/dev" "$root/tmp" "$root/run" "$root/var"
ln -s usr/lib "$root/lib"
ln -s usr/lib64 "$root/lib64"
ln -s usr/bin "$root/bin"
ln -s usr/sbin "$root/sbin"

cp /bin/busybox "$root/usr/bin/busybox"
cp /usr/sbin/pcscd "$root/usr/sbin/"
cp /usr/bin/opensc-tool /usr/bin/pkcs11-tool "$root/usr/bin/"
# GNU date for nanoseconds (busybox date has no %N).
cp /usr/bin/date "$root/usr/bin/coreutils-date"
cp -rL /usr/lib/pcsc/drivers/ifd-ccid.bundle "$root/usr/lib/pcsc/drivers/"
for lib in opensc-pkcs11.so libpcsclite.so.1 libgcc_s.so.1; do
    cp -L "/usr/lib/x86_64-linux-gnu/$lib" "$root/usr/lib/x86_64-linux-gnu/$lib"
done
find "$work"/kernel/lib/modules -name '*.ko' -exec cp {} "$root/modules/" \;

# Every library the programs and modules load, by the name they load it.
for f in /bin/busybox /usr/sbin/pcscd /usr/bin/opensc-tool /usr/bin/pkcs11-tool /usr/bin/date \
    /usr/lib/x86_64-linux-gnu/opensc-pkcs11.so /usr/lib/x86_64-linux-gnu/libpcsclite.so.1 \
    /usr/lib/pcsc/drivers/ifd-ccid.bundle/Contents/Linux/libccid.so; do
    ldd "$f" 2>/dev/null | awk '/=> \// { print $3 } /^\t\/lib/ { print $1 }'
done | sort -u | while read -r lib; do
    case "$lib" in
        */ld-linux-x86-64.so.2) cp -L "$lib" "$root/usr/lib64/ld-linux-x86-64.so.2" ;;
        *) cp -L "$lib" "$root/usr/lib/x86_64-linux-gnu/$(basename "$lib")" ;;
    esac
done
[ -e "$root/usr/lib64/ld-linux-x86-64.so.2" ] ||
    cp -L /lib64/ld-linux-x86-64.so.2 "$root/usr/lib64/ld-linux-x86-64.so.2"

cat > "$root/etc/opensc.conf" <<'EOF'
app default {
    framework pkcs15 { use_file_caching = false; }
}
EOF
echo 'root:x:0:0:root:/tmp:/bin/sh' > "$root/etc/passwd"
echo 'root:x:0:' > "$root/etc/group"
cp "$here/../src/guest-lib.sh" "$root/usr/lib/vcac-guest.sh"
cp "$here/guest-init.sh" "$root/init"
chmod 755 "$root/init"

(cd "$root" && find . | sort | busybox cpio -o -H newc -R 0:0 2>/dev/null) > "$work/initramfs.cpio"

mv "$work/vmlinuz" "$out/vmlinuz"
mv "$work/initramfs.cpio" "$out/initramfs.cpio"
rm -rf "$work"
echo "build-guest: $(du -h "$out/initramfs.cpio" | cut -f1) initramfs in $out"
