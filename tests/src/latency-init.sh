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

. /lib/vcac-guest.sh

K=$(vcac_arg k 10)
ROUNDS=$(vcac_arg rounds 1)
HC=$(vcac_arg hc uhci)
usb_host "$HC"

# Two interfaces of class 0b (smart card): both readers are enumerated.
wait_ccid 2
start_pcscd
wait_card 2
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

measure() { # name reader round
    apdu_rtt lat "$2" "$K" "reader=$1 round=$3 k=$K"
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

finish
