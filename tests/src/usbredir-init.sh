#!/bin/busybox sh
# /init of the usbredir test guest (tests/tests/qemu_usbredir.rs), laid
# over the initramfs of tests/qemu/build-guest.sh.
#
# The reader is `vcac usbredir` behind QEMU's -device usb-redir: the
# guest's own USB stack (UHCI or xHCI), pcscd and libccid drive it. Every
# result goes to the serial console as "@@VCAC <key> <value>". The host
# drives the hot-plug steps: it waits for "@@VCAC wait <what>", then acts
# (remove / insert / exit on vcac's stdin).
#
# Kernel command line: vcac.hc=uhci|xhci, vcac.pin=, vcac.n= (APDUs in the
# round-trip measurement, 0: none), vcac.hotplug=1, vcac.pinpad=1.

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
N=0
HC=uhci
HOTPLUG=0
PINPAD=0
for word in $(cat /proc/cmdline); do
    case "$word" in
        vcac.pin=*) PIN=${word#vcac.pin=} ;;
        vcac.n=*) N=${word#vcac.n=} ;;
        vcac.hc=*) HC=${word#vcac.hc=} ;;
        vcac.hotplug=*) HOTPLUG=${word#vcac.hotplug=} ;;
        vcac.pinpad=*) PINPAD=${word#vcac.pinpad=} ;;
    esac
done
P11=/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so

stamp boot
say "kernel $(uname -r)"
case "$HC" in
    xhci) mods="usb-common usbcore xhci-hcd xhci-pci" ;;
    *) mods="usb-common usbcore uhci-hcd" ;;
esac
for m in $mods; do
    insmod /modules/$m.ko || fail "insmod $m"
done

# An interface of class 0b (smart card) means enumeration is done.
ccid_iface() {
    for f in /sys/bus/usb/devices/*/bInterfaceClass; do
        [ "$(cat "$f" 2>/dev/null)" = "0b" ] && { dirname "$f"; return 0; }
    done
    return 1
}
i=0
until ccid_iface > /dev/null; do
    i=$((i + 1))
    [ $i -gt 600 ] && fail "no USB CCID interface appeared"
    sleep 0.1
done
dev=$(ccid_iface)
dev=/sys/bus/usb/devices/$(basename "$dev" | cut -d: -f1)
say "usb $(cat $dev/idVendor):$(cat $dev/idProduct) speed $(cat $dev/speed)"
stamp usb

pcscd -f -a > /tmp/pcscd.log 2>&1 &
wait_card() {
    i=0
    until opensc-tool -l 2>/dev/null | grep -q "$1"; do
        i=$((i + 1))
        [ $i -gt 300 ] && { opensc-tool -l; fail "pcscd shows no '$1'"; }
        sleep 0.1
    done
}
wait_card Yes
stamp card
opensc-tool -l | sed 's/^/@@VCAC readers /'
say "atr $(opensc-tool -r 0 -a 2>&1 | head -n 1)"
say "name $(opensc-tool -r 0 -n 2>&1 | head -n 1)"
stamp bind

pkcs11-tool --module $P11 --read-object --type cert --id 0001 -o /tmp/cert.der \
    > /tmp/read.txt 2>&1 || { cat /tmp/read.txt; fail "pkcs11-tool --read-object"; }
xxd -p /tmp/cert.der | sed 's/^/@@VCAC cert /'
stamp cert

printf 'vcac over usbredir' > /tmp/data
pkcs11-tool --module $P11 --login --pin "$PIN" --sign -m SHA256-RSA-PKCS --id 0001 \
    -i /tmp/data -o /tmp/sig > /tmp/sign.txt 2>&1 || { cat /tmp/sign.txt; fail "pkcs11-tool --sign"; }
xxd -p /tmp/data | sed 's/^/@@VCAC data /'
xxd -p /tmp/sig | sed 's/^/@@VCAC sig /'
stamp sign

if [ "$PINPAD" = 1 ]; then
    # The PIN comes from vcac's virtual PIN pad, not from the command line.
    printf 'app default {\n  reader_driver pcsc { enable_pinpad = true; }\n  framework pkcs15 { use_file_caching = false; }\n}\n' > /tmp/pinpad.conf
    OPENSC_CONF=/tmp/pinpad.conf pkcs11-tool --module $P11 -L > /tmp/slots.txt 2>&1
    grep -q 'PIN pad' /tmp/slots.txt && say "pinpad-token protected-authentication-path" ||
        { cat /tmp/slots.txt; say "pinpad-token none"; }
    printf 'signed through the PIN pad' > /tmp/pdata
    OPENSC_CONF=/tmp/pinpad.conf pkcs11-tool --module $P11 --login --sign -m SHA256-RSA-PKCS \
        --id 0001 -i /tmp/pdata -o /tmp/psig > /tmp/psign.txt 2>&1 ||
        { cat /tmp/psign.txt; fail "pkcs11-tool --login (PIN pad) --sign"; }
    xxd -p /tmp/pdata | sed 's/^/@@VCAC pdata /'
    xxd -p /tmp/psig | sed 's/^/@@VCAC psig /'
    stamp pinpad
fi

if [ "$N" -gt 0 ]; then
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
        say "rtt n=$N one=$((t1 - t0)) many=$((t2 - t1)) answers=$(grep -c 'Received (SW1=' /tmp/many.txt)"
    done
    stamp rtt
fi

if [ "$HOTPLUG" = 1 ]; then
    say "wait remove"
    wait_card "No "
    say "hotplug removed $(opensc-tool -l | grep -c 'No ')"
    say "wait insert"
    wait_card Yes
    say "hotplug inserted $(opensc-tool -r 0 -n 2>&1 | head -n 1)"
    say "wait unplug"
    i=0
    while [ -e "$dev/idProduct" ]; do
        i=$((i + 1))
        [ $i -gt 300 ] && fail "the reader did not leave the USB bus"
        sleep 0.1
    done
    say "hotplug unplugged"
    stamp hotplug
fi

say "ok"
say "end"
sync
reboot -f
