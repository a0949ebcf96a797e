#!/bin/busybox sh
# /init of the ccid-card-emulated test guest (tests/tests/qemu_emulated.rs),
# laid over the initramfs of tests/qemu/build-guest.sh.
#
# The card is emulated inside QEMU by ccid-card-emulated on vcac's
# libcacard.so.0, behind usb-ccid (UHCI). The host's own pcscd + libccid +
# OpenSC bind it, read certificate 0001 and sign. Then the host unplugs the
# card device (QMP device_del) when the guest prints "@@VCAC wait remove",
# and plugs it back (device_add) on "@@VCAC wait insert"; the guest reads
# and signs once more. Every result goes to the serial console as
# "@@VCAC <key> <value>"; binary results are hex, 30 bytes a line.
#
# Kernel command line: vcac.pin= (the NSS database password).

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
    echo "--- dmesg (tail)"
    dmesg | tail -n 30
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

# card_in: reader 0 shows a card.
card_in() { opensc-tool -l 2>/dev/null | grep -q 'Yes'; }

# read_and_sign SUFFIX: certificate 0001 and a signature, as cert$SUFFIX,
# data$SUFFIX and sig$SUFFIX.
read_and_sign() {
    pkcs11-tool --module $P11 --read-object --type cert --id 0001 -o /tmp/cert.der \
        > /tmp/read.txt 2>&1 || { cat /tmp/read.txt; fail "pkcs11-tool --read-object ($1)"; }
    xxd -p /tmp/cert.der | sed "s/^/@@VCAC cert$1 /"
    printf 'vcac ccid-card-emulated %s' "$1" > /tmp/data
    pkcs11-tool --module $P11 --login --pin "$PIN" --sign -m SHA256-RSA-PKCS --id 0001 \
        -i /tmp/data -o /tmp/sig > /tmp/sign.txt 2>&1 ||
        { cat /tmp/sign.txt; fail "pkcs11-tool --sign ($1)"; }
    xxd -p /tmp/data | sed "s/^/@@VCAC data$1 /"
    xxd -p /tmp/sig | sed "s/^/@@VCAC sig$1 /"
}

stamp boot
say "kernel $(uname -r)"
for m in usb-common usbcore uhci-hcd; do
    insmod /modules/$m.ko || fail "insmod $m"
done

# QEMU's usb-ccid is 08e6:4433.
i=0
until grep -qs 4433 /sys/bus/usb/devices/*/idProduct; do
    i=$((i + 1))
    [ $i -gt 300 ] && fail "no USB CCID reader (08e6:4433) appeared"
    sleep 0.1
done
stamp usb

pcscd -f -a > /tmp/pcscd.log 2>&1 &
i=0
until card_in; do
    i=$((i + 1))
    [ $i -gt 300 ] && { opensc-tool -l; fail "pcscd shows no card"; }
    sleep 0.1
done
stamp card
opensc-tool -l | sed 's/^/@@VCAC readers /'
say "atr $(opensc-tool -r 0 -a 2>&1 | head -n 1)"
say "name $(opensc-tool -r 0 -n 2>&1 | head -n 1)"
read_and_sign 1
stamp sign1

# The host unplugs the card device.
say "wait remove"
i=0
while card_in; do
    i=$((i + 1))
    [ $((i % 10)) -eq 0 ] && opensc-tool -l 2>&1 | sed "s/^/@@VCAC still-$i /"
    [ $i -gt 60 ] && fail "the card did not go away after device_del"
    sleep 0.5
done
stamp removed
opensc-tool -l | sed 's/^/@@VCAC gone /'

# The host plugs it back.
say "wait insert"
i=0
until card_in; do
    i=$((i + 1))
    [ $i -gt 60 ] && { opensc-tool -l; fail "the card did not come back after device_add"; }
    sleep 0.5
done
stamp reinserted
say "name2 $(opensc-tool -r 0 -n 2>&1 | head -n 1)"
read_and_sign 2
stamp sign2

say "ok"
say "end"
sync
reboot -f
