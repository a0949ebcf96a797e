#!/bin/busybox sh
# /init of the latency guest (benches/benches/usbredir_latency.rs), laid
# over the usbredir guest's initramfs (guest::usbredir_guest_image).
#
# Two readers on one USB controller (UHCI or xHCI): QEMU's usb-ccid with
# ccid-card-passthru (served by `vcac passthru`) and a usb-redir device
# (served by `vcac usbredir`). pcscd and libccid drive both. For each
# round, and for each reader in turn (the one that goes first
# alternating), opensc-tool runs once with 1 APDU and once with 1 + K;
# the host takes the difference / K.
# Results go to the serial console as "@@VCAC <key> <value>".
#
# Kernel command line: vcac.k= (extra APDUs), vcac.rounds=, vcac.hc=
# (uhci, the default, or xhci: the host controller driver to load).

/bin/busybox --install -s /bin
export PATH=/usr/bin:/usr/sbin:/bin
export LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu
export OPENSC_CONF=/etc/opensc.conf
export HOME=/tmp

say() { echo "@@VCAC $*"; }

fail() {
    say "fail $*"
    echo "--- opensc-tool -l"
    opensc-tool -l 2>&1
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

K=10
ROUNDS=1
HC=uhci
for word in $(cat /proc/cmdline); do
    case "$word" in
        vcac.k=*) K=${word#vcac.k=} ;;
        vcac.rounds=*) ROUNDS=${word#vcac.rounds=} ;;
        vcac.hc=*) HC=${word#vcac.hc=} ;;
    esac
done

case "$HC" in
    xhci) mods="usb-common usbcore xhci-hcd xhci-pci" ;;
    *) mods="usb-common usbcore uhci-hcd" ;;
esac
for m in $mods; do
    insmod /modules/$m.ko || fail "insmod $m"
done

# Two interfaces of class 0b (smart card): both readers are enumerated.
i=0
until [ "$(cat /sys/bus/usb/devices/*/bInterfaceClass 2>/dev/null | grep -c '^0b$')" -ge 2 ]; do
    i=$((i + 1))
    [ $i -gt 600 ] && fail "fewer than two USB CCID interfaces appeared"
    sleep 0.1
done

pcscd -f -a > /tmp/pcscd.log 2>&1 &
i=0
until [ "$(opensc-tool -l 2>/dev/null | grep -c ' Yes ')" -ge 2 ]; do
    i=$((i + 1))
    [ $i -gt 300 ] && fail "pcscd shows fewer than two readers with a card"
    sleep 0.1
done
opensc-tool -l | sed 's/^/@@VCAC readers /'

# Both readers present VID:PID 08e6:4433; pcscd names them with their USB
# serial numbers, which tell them apart (product strings from sysfs).
serial_of() {
    for d in /sys/bus/usb/devices/*; do
        [ "$(cat "$d/product" 2>/dev/null)" = "$1" ] && { cat "$d/serial"; return 0; }
    done
    return 1
}
reader_of() {
    opensc-tool -l | grep -F "($1)" | awk '{ print $1; exit }'
}
REDIR=$(reader_of "$(serial_of 'vcac usbredir CCID')")
CCID=$(reader_of "$(serial_of 'QEMU USB CCID')")
[ -n "$REDIR" ] || fail "no usbredir reader (product vcac usbredir CCID)"
[ -n "$CCID" ] || fail "no usb-ccid reader (product QEMU USB CCID)"
say "reader usbredir $REDIR"
say "reader usb-ccid $CCID"
opensc-tool -r "$REDIR" -n > /dev/null 2>&1 || fail "no card behind reader $REDIR"
opensc-tool -r "$CCID" -n > /dev/null 2>&1 || fail "no card behind reader $CCID"

APDU=00A4040005A000000001
many="-s $APDU"
i=0
while [ $i -lt "$K" ]; do
    many="$many -s $APDU"
    i=$((i + 1))
done

measure() { # name reader round
    t0=$(coreutils-date +%s%N)
    opensc-tool -r "$2" -s $APDU > /tmp/one.txt 2>&1 || fail "opensc-tool -r $2 -s"
    t1=$(coreutils-date +%s%N)
    opensc-tool -r "$2" $many > /tmp/many.txt 2>&1 || fail "opensc-tool -r $2 -s x $K"
    t2=$(coreutils-date +%s%N)
    say "lat reader=$1 round=$3 k=$K one=$((t1 - t0)) many=$((t2 - t1)) answers=$(grep -c 'Received (SW1=' /tmp/many.txt)"
}

round=1
while [ $round -le "$ROUNDS" ]; do
    if [ $((round % 2)) = 1 ]; then
        measure usbredir "$REDIR" $round
        measure usb-ccid "$CCID" $round
    else
        measure usb-ccid "$CCID" $round
        measure usbredir "$REDIR" $round
    fi
    round=$((round + 1))
done

say "ok"
say "end"
sync
reboot -f
