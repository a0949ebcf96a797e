#!/bin/busybox sh
# /init of the libvirt `host` mode test guest (tests/tests/qemu_host_mode.rs)
# and of the PC/SC relay guest (tests/tests/qemu_pcsc_relay.rs, where the
# card comes over VSCard instead), laid over the initramfs of
# tests/qemu/build-guest.sh.
#
# QEMU runs `ccid-card-emulated,backend=nss-emulated` on vcac's
# libcacard.so.0, which mirrors a host PKCS#11 token (listed in the
# /etc/pki/nssdb QEMU sees) as the card behind usb-ccid. The guest's
# pcscd + libccid + OpenSC bind it, read certificate 0001 and sign with
# the token's PIN; then the host takes the token away when the guest
# prints "@@VCAC wait remove", and the card must leave the guest's reader.
# Results go to the serial console as "@@VCAC <key> <value>"; binary
# results are hex.
#
# Kernel command line: vcac.pin= (the token's PIN).

/bin/busybox --install -s /bin
export PATH=/usr/bin:/usr/sbin:/bin
export LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu
export OPENSC_CONF=/etc/opensc.conf
export HOME=/tmp

say() { echo "@@VCAC $*"; }
stamp() { say "t $1 $(cut -d' ' -f1 /proc/uptime)"; }

fail() {
    say "fail $*"
    echo "--- pcscd log (tail)"
    tail -n 60 /tmp/pcscd.log 2>/dev/null
    say "end"
    sync
    reboot -f
}

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /tmp /run/pcscd /var/run
dmesg -n 1

PIN=
for word in $(cat /proc/cmdline); do
    case "$word" in
        vcac.pin=*) PIN=${word#vcac.pin=} ;;
    esac
done
[ -n "$PIN" ] || fail "no vcac.pin= on the kernel command line"
P11=/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so

card_in() { opensc-tool -l 2>/dev/null | grep -q 'Yes'; }

stamp boot
for m in usb-common usbcore uhci-hcd; do
    insmod /modules/$m.ko || fail "insmod $m"
done
i=0
until grep -qs 4433 /sys/bus/usb/devices/*/idProduct; do
    i=$((i + 1))
    [ $i -gt 300 ] && fail "no USB CCID reader (08e6:4433) appeared"
    sleep 0.1
done
pcscd -f -a > /tmp/pcscd.log 2>&1 &
i=0
until card_in; do
    i=$((i + 1))
    [ $i -gt 600 ] && { opensc-tool -l; fail "pcscd shows no card"; }
    sleep 0.1
done
stamp card
opensc-tool -l | sed 's/^/@@VCAC readers /'
say "atr $(opensc-tool -r 0 -a 2>&1 | head -n 1)"
say "name $(opensc-tool -r 0 -n 2>&1 | head -n 1)"

pkcs11-tool --module $P11 --read-object --type cert --id 0001 -o /tmp/cert.der \
    > /tmp/read.txt 2>&1 || { cat /tmp/read.txt; fail "pkcs11-tool --read-object"; }
xxd -p /tmp/cert.der | sed "s/^/@@VCAC cert /"
printf 'signed in the guest with a host token' > /tmp/data
pkcs11-tool --module $P11 --login --pin "$PIN" --sign -m SHA256-RSA-PKCS --id 0001 \
    -i /tmp/data -o /tmp/sig > /tmp/sign.txt 2>&1 ||
    { cat /tmp/sign.txt; fail "pkcs11-tool --sign"; }
xxd -p /tmp/data | sed "s/^/@@VCAC data /"
xxd -p /tmp/sig | sed "s/^/@@VCAC sig /"
stamp sign

say "wait remove"
i=0
while card_in; do
    i=$((i + 1))
    [ $i -gt 120 ] && fail "the card did not leave after the token did"
    sleep 0.5
done
stamp removed
opensc-tool -l | sed 's/^/@@VCAC gone /'

say "ok"
say "end"
sync
reboot -f
