#!/bin/busybox sh
# /init of the QEMU test guest (tests/tests/qemu_guest.rs).
#
# Brings up USB (UHCI), starts the host's own pcscd + libccid, and runs
# OpenSC against the card QEMU's usb-ccid + ccid-card-passthru shows. Every
# result goes to the serial console as a line "@@VCAC <key> <value>"
# (tests/src/guest-lib.sh). The guest powers off at the end (QEMU runs with
# -no-reboot).
#
# Parameters come from the kernel command line: vcac.pin=, vcac.n= (APDUs
# in the round-trip measurement).

. /lib/vcac-guest.sh

PIN=$(vcac_arg pin 12345678)
N=$(vcac_arg n 200)

bring_up uhci
report_card
stamp bind

read_cert cert
stamp cert

sign data sig 'vcac in a QEMU guest'
stamp sign

# Three round-trip measurements, so the host can take the least disturbed.
for round in 1 2 3; do
    apdu_rtt rtt 0 "$N"
done
stamp rtt

finish
