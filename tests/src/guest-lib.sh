# The part every test guest's /init shares; tests/qemu/build-guest.sh puts
# it at /lib/vcac-guest.sh and an /init starts with
#
#   #!/bin/busybox sh
#   . /lib/vcac-guest.sh
#
# Sourcing it installs busybox's applets, sets PATH and the environment of
# pcscd and OpenSC, and mounts /proc, /sys and /dev. Results go to the
# serial console as "@@VCAC <key> <value>" lines (`say`); binary results are
# hex, 30 bytes a line (`hex`). The host reads them with
# vcac_tests::guest::results. An /init ends with `finish` (or `fail`): the
# guest powers off and QEMU, run with -no-reboot, exits.

/bin/busybox --install -s /bin
export PATH=/usr/bin:/usr/sbin:/bin
export LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu
export OPENSC_CONF=/etc/opensc.conf
export HOME=/tmp
P11=/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so
PCSCD_PID=

say() { echo "@@VCAC $*"; }

# stamp PHASE: the guest's uptime at PHASE, as "t PHASE SECONDS".
stamp() { say "t $1 $(cut -d' ' -f1 /proc/uptime)"; }

# hex KEY FILE: FILE as "KEY <hex>" lines.
hex() { xxd -p "$2" | sed "s/^/@@VCAC $1 /"; }

# fail WHY: reports the failure with what pcscd and the kernel said, and
# powers off.
fail() {
    say "fail $*"
    if [ -n "$PCSCD_PID" ]; then
        echo "--- opensc-tool -l"
        timeout 10 opensc-tool -l 2>&1
        echo "--- pcscd log (tail)"
        tail -n 60 /tmp/pcscd.log 2>/dev/null
    fi
    echo "--- dmesg (tail)"
    dmesg | tail -n 30
    say "end"
    sync
    reboot -f
}

# finish: reports success and powers off.
finish() {
    say "ok"
    say "end"
    sync
    reboot -f
}

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /tmp /run/pcscd /var/run
dmesg -n 1

# vcac_arg NAME [DEFAULT]: the value of vcac.NAME= on the kernel command
# line, else DEFAULT.
vcac_arg() {
    for word in $(cat /proc/cmdline); do
        case "$word" in
            "vcac.$1="*) echo "${word#vcac.$1=}"; return ;;
        esac
    done
    echo "${2:-}"
}

# until_ok TRIES PAUSE WHY COMMAND...: runs COMMAND until it succeeds,
# PAUSE seconds apart; fails with WHY after TRIES more tries.
until_ok() {
    local tries=$1 pause=$2 why=$3 n=0
    shift 3
    until "$@"; do
        n=$((n + 1))
        [ $n -gt "$tries" ] && fail "$why"
        sleep "$pause"
    done
}

# usb_host uhci|xhci: loads the USB core and that host controller's driver.
usb_host() {
    local m mods="usb-common usbcore uhci-hcd"
    [ "$1" = xhci ] && mods="usb-common usbcore xhci-hcd xhci-pci"
    for m in $mods; do
        insmod /modules/$m.ko || fail "insmod $m"
    done
}

# ccid_interfaces: how many USB interfaces of class 0b (smart card) there are.
ccid_interfaces() {
    cat /sys/bus/usb/devices/*/bInterfaceClass 2>/dev/null | grep -c '^0b$'
}

# ccid_enumerated [N]: at least N (default 1) CCID interfaces are enumerated.
ccid_enumerated() { [ "$(ccid_interfaces)" -ge "${1:-1}" ]; }

# wait_ccid [N]: waits (up to 60 s) until N (default 1) CCID interfaces are.
wait_ccid() {
    until_ok 600 0.1 "fewer than ${1:-1} USB CCID interface(s) appeared" ccid_enumerated "${1:-1}"
}

# start_pcscd: the host's pcscd, logging to /tmp/pcscd.log.
start_pcscd() {
    pcscd -f -a > /tmp/pcscd.log 2>&1 &
    PCSCD_PID=$!
}

# cards_in: how many readers show a card.
cards_in() { opensc-tool -l 2>/dev/null | grep -c ' Yes '; }

# card_in [N]: at least N (default 1) readers show a card.
card_in() { [ "$(cards_in)" -ge "${1:-1}" ]; }

# card_out: no reader shows a card.
card_out() { ! card_in; }

# wait_card [N]: waits (up to 60 s) until N (default 1) readers show a card.
wait_card() {
    until_ok 600 0.1 "pcscd shows fewer than ${1:-1} reader(s) with a card" card_in "${1:-1}"
}

# bring_up [uhci|xhci]: USB on that host controller (default uhci) with a
# CCID reader, pcscd, and a card in the reader; stamps boot, usb and card.
bring_up() {
    stamp boot
    say "kernel $(uname -r)"
    usb_host "${1:-uhci}"
    wait_ccid
    stamp usb
    start_pcscd
    wait_card
    stamp card
}

# report_card: the readers, and reader 0's ATR and card name, as
# "readers", "atr" and "name".
report_card() {
    opensc-tool -l | sed 's/^/@@VCAC readers /'
    say "atr $(opensc-tool -r 0 -a 2>&1 | head -n 1)"
    say "name $(opensc-tool -r 0 -n 2>&1 | head -n 1)"
}

# read_cert KEY: certificate 0001 read through OpenSC's PKCS#11 module,
# as KEY lines.
read_cert() {
    pkcs11-tool --module $P11 --read-object --type cert --id 0001 -o /tmp/cert.der \
        > /tmp/read.txt 2>&1 || { cat /tmp/read.txt; fail "pkcs11-tool --read-object ($1)"; }
    hex "$1" /tmp/cert.der
}

# sign DATA_KEY SIG_KEY TEXT [LOGIN...]: TEXT signed (SHA256-RSA-PKCS) with
# key 0001 after `--login LOGIN...` (default: --pin "$PIN"); TEXT as
# DATA_KEY lines, the signature as SIG_KEY lines.
sign() {
    local data=$1 sig=$2 text=$3
    shift 3
    [ $# -gt 0 ] || set -- --pin "$PIN"
    printf '%s' "$text" > /tmp/data
    pkcs11-tool --module $P11 --login "$@" --sign -m SHA256-RSA-PKCS --id 0001 \
        -i /tmp/data -o /tmp/sig > /tmp/sign.txt 2>&1 ||
        { cat /tmp/sign.txt; fail "pkcs11-tool --sign ($sig)"; }
    hex "$data" /tmp/data
    hex "$sig" /tmp/sig
}

# apdu_rtt KEY READER K [WORDS]: one opensc-tool run with 1 APDU and one
# with 1 + K; the difference is K round trips guest -> pcscd -> libccid ->
# USB -> QEMU -> vcac and back (card binding and process start cancel out).
# Says "KEY WORDS n=K one=NS many=NS answers=A sw=SW".
apdu_rtt() {
    local key=$1 reader=$2 k=$3 words=${4:-} apdu=00A4040005A000000001 many t0 t1 t2 n=0
    many="-s $apdu"
    while [ $n -lt "$k" ]; do
        many="$many -s $apdu"
        n=$((n + 1))
    done
    t0=$(coreutils-date +%s%N)
    opensc-tool -r "$reader" -s $apdu > /tmp/one.txt 2>&1 || fail "opensc-tool -r $reader -s"
    t1=$(coreutils-date +%s%N)
    opensc-tool -r "$reader" $many > /tmp/many.txt 2>&1 || fail "opensc-tool -r $reader -s x $k"
    t2=$(coreutils-date +%s%N)
    say "$key ${words:+$words }n=$k one=$((t1 - t0)) many=$((t2 - t1))" \
        "answers=$(grep -c 'Received (SW1=' /tmp/many.txt)" \
        "sw=$(grep -m1 -o 'SW1=0x[0-9A-Fa-f]*, SW2=0x[0-9A-Fa-f]*' /tmp/one.txt | tr -d ' ')"
}
