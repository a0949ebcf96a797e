#!/usr/bin/env bash
# Installs the drop-in libcacard into PREFIX: PREFIX/lib/libcacard.so.0.0.0
# with the libcacard.so.0 and libcacard.so symlinks, the headers in
# PREFIX/include/cacard and PREFIX/lib/pkgconfig/libcacard.pc.
#
#   libcacard/install.sh /opt/vcac      # after cargo build --release
#   LD_LIBRARY_PATH=/opt/vcac/lib qemu-system-x86_64 ... -device ccid-card-emulated,...
set -euo pipefail
if (($# != 1)); then
    echo "usage: $0 PREFIX" >&2
    exit 2
fi
prefix=$1
here=$(cd "$(dirname "$0")" && pwd)
target=${CARGO_TARGET_DIR:-$here/../target}
so=$target/release/libcacard.so
if [[ ! -f $so ]]; then
    echo "$so not found: run 'cargo build -p libcacard --release' first" >&2
    exit 1
fi
install -d "$prefix/lib/pkgconfig" "$prefix/include/cacard"
install -m 0755 "$so" "$prefix/lib/libcacard.so.0.0.0"
ln -sfn libcacard.so.0.0.0 "$prefix/lib/libcacard.so.0"
ln -sfn libcacard.so.0 "$prefix/lib/libcacard.so"
install -m 0644 "$here"/include/cacard/*.h "$prefix/include/cacard/"
sed "s|@PREFIX@|$prefix|" "$here/libcacard.pc.in" >"$prefix/lib/pkgconfig/libcacard.pc"
echo "installed libcacard.so.0 (vcac) in $prefix/lib"
