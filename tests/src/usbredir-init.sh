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

. /lib/vcac-guest.sh

PIN=$(vcac_arg pin 12345678)
N=$(vcac_arg n 0)
HC=$(vcac_arg hc uhci)
HOTPLUG=$(vcac_arg hotplug 0)
PINPAD=$(vcac_arg pinpad 0)

stamp boot
say "kernel $(uname -r)"
usb_host "$HC"

# An interface of class 0b (smart card) means enumeration is done.
ccid_iface() {
    for f in /sys/bus/usb/devices/*/bInterfaceClass; do
        [ "$(cat "$f" 2>/dev/null)" = "0b" ] && { dirname "$f"; return 0; }
    done
    return 1
}
wait_ccid
dev=$(ccid_iface)
dev=/sys/bus/usb/devices/$(basename "$dev" | cut -d: -f1)
say "usb $(cat $dev/idVendor):$(cat $dev/idProduct) speed $(cat $dev/speed)"
stamp usb

start_pcscd
wait_card
stamp card
report_card
stamp bind

read_cert cert
stamp cert

sign data sig 'vcac over usbredir'
stamp sign

if [ "$PINPAD" = 1 ]; then
    # The PIN comes from vcac's virtual PIN pad, not from the command line.
    printf 'app default {\n  reader_driver pcsc { enable_pinpad = true; }\n  framework pkcs15 { use_file_caching = false; }\n}\n' > /tmp/pinpad.conf
    OPENSC_CONF=/tmp/pinpad.conf pkcs11-tool --module $P11 -L > /tmp/slots.txt 2>&1
    grep -q 'PIN pad' /tmp/slots.txt && say "pinpad-token protected-authentication-path" ||
        { cat /tmp/slots.txt; say "pinpad-token none"; }
    OPENSC_CONF=/tmp/pinpad.conf sign pdata psig 'signed through the PIN pad' --login-type user
    stamp pinpad
fi

if [ "$N" -gt 0 ]; then
    for round in 1 2 3; do
        apdu_rtt rtt 0 "$N"
    done
    stamp rtt
fi

if [ "$HOTPLUG" = 1 ]; then
    say "wait remove"
    until_ok 300 0.1 "the card did not leave" card_out
    say "hotplug removed $(opensc-tool -l | grep -c 'No ')"
    say "wait insert"
    wait_card
    say "hotplug inserted $(opensc-tool -r 0 -n 2>&1 | head -n 1)"
    # `unplug` then `plug` on vcac's stdin, one usbredir connection: the
    # reader leaves the bus, comes back, and a fresh pcscd reads the card.
    say "wait replug"
    until_ok 300 0.1 "the reader did not leave the USB bus" [ ! -e "$dev/idProduct" ]
    say "hotplug detached"
    wait_ccid
    kill "$PCSCD_PID"
    wait "$PCSCD_PID" 2>/dev/null
    start_pcscd
    wait_card
    say "hotplug replugged $(opensc-tool -r 0 -n 2>&1 | head -n 1)"
    read_cert recert
    say "wait unplug"
    until_ok 300 0.1 "the reader did not leave the USB bus" [ ! -e "$dev/idProduct" ]
    say "hotplug unplugged"
    stamp hotplug
fi

finish
