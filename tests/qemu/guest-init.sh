#!/bin/busybox sh
# /init of the QEMU test guest (tests/tests/qemu_guest.rs).
#
# Brings up USB (UHCI), starts the host's own pcscd + libccid, and runs
# OpenSC against the card QEMU's usb-ccid + ccid-card-passthru shows. Every
# result goes to the serial console as a line "@@VCAC <key> <value>";
# binary results are hex, 30 bytes a line. The guest powers off at the end
# (QEMU runs with -no-reboot).
#
# Parameters come from the kernel command line: vcac.pin=, vcac.n= (APDUs
# in the round-trip measurement).

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

PIN=12345678
N=200
for word in $(cat /proc/cmdline); do
    case "$word" in
        vcac.pin=*) PIN=${word#vcac.pin=} ;;
        vcac.n=*) N=${word#vcac.n=} ;;
    esac
done
P11=/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so

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
until opensc-tool -l 2>/dev/null | grep -q 'Yes'; do
    i=$((i + 1))
    [ $i -gt 300 ] && { opensc-tool -l; fail "pcscd shows no card"; }
    sleep 0.1
done
stamp card
opensc-tool -l | sed 's/^/@@VCAC readers /'
say "atr $(opensc-tool -r 0 -a 2>&1 | head -n 1)"
say "name $(opensc-tool -r 0 -n 2>&1 | head -n 1)"
stamp bind

pkcs11-tool --module $P11 --read-object --type cert --id 0001 -o /tmp/cert.der \
    > /tmp/read.txt 2>&1 || { cat /tmp/read.txt; fail "pkcs11-tool --read-object"; }
xxd -p /tmp/cert.der | sed 's/^/@@VCAC cert /'
stamp cert

printf 'vcac in a QEMU guest' > /tmp/data
pkcs11-tool --module $P11 --login --pin "$PIN" --sign -m SHA256-RSA-PKCS --id 0001 \
    -i /tmp/data -o /tmp/sig > /tmp/sign.txt 2>&1 || { cat /tmp/sign.txt; fail "pkcs11-tool --sign"; }
xxd -p /tmp/data | sed 's/^/@@VCAC data /'
xxd -p /tmp/sig | sed 's/^/@@VCAC sig /'
stamp sign

# APDU round trip: one opensc-tool run with 1 APDU and one with 1 + N; the
# difference is N round trips guest -> pcscd -> libccid -> USB -> QEMU ->
# VSCard -> vcac and back (card binding and process start cancel out).
# Three pairs, so the host can take the least disturbed one.
APDU=00A4040005A000000001
many="-s $APDU"
i=0
while [ $i -lt "$N" ]; do
    many="$many -s $APDU"
    i=$((i + 1))
done
for round in 1 2 3; do
    t0=$(coreutils-date +%s%N)
    opensc-tool -r 0 -s $APDU > /tmp/one.txt 2>&1 || fail "opensc-tool -s"
    t1=$(coreutils-date +%s%N)
    opensc-tool -r 0 $many > /tmp/many.txt 2>&1 || fail "opensc-tool -s x N"
    t2=$(coreutils-date +%s%N)
    say "rtt n=$N one=$((t1 - t0)) many=$((t2 - t1)) answers=$(grep -c 'Received (SW1=' /tmp/many.txt) sw=$(grep -m1 -o 'SW1=0x[0-9A-Fa-f]*, SW2=0x[0-9A-Fa-f]*' /tmp/one.txt | tr -d ' ')"
done
stamp rtt

say "ok"
say "end"
sync
reboot -f
