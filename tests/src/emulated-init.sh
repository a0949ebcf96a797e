#!/bin/busybox sh
# /init of the ccid-card-emulated test guest (tests/tests/qemu_emulated.rs),
# laid over the guest image (vcac_tests::guest::guest_image).
#
# The card is emulated inside QEMU by ccid-card-emulated on vcac's
# libcacard.so.0, behind usb-ccid (UHCI). The host's own pcscd + libccid +
# OpenSC bind it, read certificate 0001 and sign. Then the host unplugs the
# card device (QMP device_del) when the guest prints "@@VCAC wait remove",
# and plugs it back (device_add) on "@@VCAC wait insert"; the guest reads
# and signs once more. Every result goes to the serial console as
# "@@VCAC <key> <value>" (tests/src/guest-lib.sh).
#
# Kernel command line: vcac.pin= (the NSS database password).

. /lib/vcac-guest.sh

PIN=$(vcac_arg pin)
[ -n "$PIN" ] || fail "no vcac.pin= on the kernel command line"

bring_up uhci
report_card
read_cert cert1
sign data1 sig1 'vcac ccid-card-emulated 1'
stamp sign1

# The host unplugs the card device.
say "wait remove"
until_ok 60 0.5 "the card did not go away after device_del" card_out
stamp removed
opensc-tool -l | sed 's/^/@@VCAC gone /'

# The host plugs it back.
say "wait insert"
until_ok 60 0.5 "the card did not come back after device_add" card_in
stamp reinserted
say "name2 $(opensc-tool -r 0 -n 2>&1 | head -n 1)"
read_cert cert2
sign data2 sig2 'vcac ccid-card-emulated 2'
stamp sign2

finish
