#!/bin/busybox sh
# /init of the libvirt `host` mode test guest (tests/tests/qemu_host_mode.rs)
# and of the PC/SC relay guest (tests/tests/qemu_pcsc_relay.rs, where the
# card comes over VSCard instead), laid over the guest image
# (vcac_tests::guest::guest_image).
#
# QEMU runs `ccid-card-emulated,backend=nss-emulated` on vcac's
# libcacard.so.0, which mirrors a host PKCS#11 token (listed in the
# /etc/pki/nssdb QEMU sees) as the card behind usb-ccid. The guest's
# pcscd + libccid + OpenSC bind it, read certificate 0001 and sign with
# the token's PIN; then the host takes the token away when the guest
# prints "@@VCAC wait remove", and the card must leave the guest's reader.
# Results go to the serial console as "@@VCAC <key> <value>"
# (tests/src/guest-lib.sh).
#
# Kernel command line: vcac.pin= (the token's PIN).

. /lib/vcac-guest.sh

PIN=$(vcac_arg pin)
[ -n "$PIN" ] || fail "no vcac.pin= on the kernel command line"

bring_up uhci
report_card

read_cert cert
sign data sig 'signed in the guest with a host token'
stamp sign

say "wait remove"
until_ok 120 0.5 "the card did not leave after the token did" card_out
stamp removed
opensc-tool -l | sed 's/^/@@VCAC gone /'

finish
