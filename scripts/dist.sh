#!/usr/bin/env bash
# `make dist`: a release `turf` for a machine without Swift, at dist/turf-VERSION-linux-ARCH, with
# its SHA-256 beside it (dist/turf-VERSION-linux-ARCH.sha256, for `sha256sum -c`).
#
# The Swift runtime and Foundation are linked in (--static-swift-stdlib), and so are libsodium and
# ncursesw: their shared objects are not the same across distributions (libsodium.so.23 on
# Debian/Ubuntu, libsodium.so.26 on Fedora and Arch from libsodium 1.0.19 on; Arch has no
# libtinfo.so.6), so a binary that needed them would start on some systems only. What is left is
# glibc, libstdc++ and libgcc_s, which every glibc distribution installs, and the terminfo database
# (/usr/share/terminfo) that the linked-in ncurses reads. The script fails if the binary needs any
# other shared library.
#
# It builds in its own scratch directory (.build/dist): the static link changes the C libraries'
# pkg-config flags, and in .build it would recompile what `make release` compiled and back again.
# Usage: scripts/dist.sh   (SWIFT=path/to/swift to choose the toolchain)
set -euo pipefail
cd "$(dirname "$0")/.."
swift=${SWIFT:-swift}
for tool in strip readelf objdump sha256sum pkg-config; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "dist: $tool is missing (binutils, coreutils, pkg-config)" >&2
        exit 1
    fi
done

scratch=.build/dist
libs="$(pwd)/$scratch/static-libs"
mkdir -p "$libs/pkgconfig"
# pkg-config files of our own for the two system libraries, the same but for the link line: -L to a
# directory holding only their static archives, which the linker then takes for -lsodium etc.
for pc in libsodium ncursesw; do
    libdir=$(pkg-config --variable=libdir "$pc")
    names=$(pkg-config --libs-only-l "$pc")
    for flag in $names; do
        archive="$libdir/lib${flag#-l}.a"
        if [ ! -f "$archive" ]; then
            echo "dist: $archive is missing (the static library of $pc)" >&2
            exit 1
        fi
        ln -sf "$archive" "$libs/"
    done
    {
        echo "Name: $pc"
        echo "Description: $pc, linked statically by scripts/dist.sh"
        echo "Version: $(pkg-config --modversion "$pc")"
        echo "Libs: -L$libs $names"
        echo "Cflags: $(pkg-config --cflags "$pc")"
    } >"$libs/pkgconfig/$pc.pc"
done

start=$(date +%s)
PKG_CONFIG_PATH="$libs/pkgconfig" "$swift" build -c release --product turf --static-swift-stdlib \
    --scratch-path "$scratch"
built="$scratch/release/turf"
echo "dist: built in $(($(date +%s) - start)) s"

# Only these shared libraries may be needed: glibc's, libstdc++ and libgcc_s.
needed=$(readelf -d "$built" | sed -n 's/.*(NEEDED).*\[\(.*\)\]$/\1/p')
unexpected=$(printf '%s\n' "$needed" | grep -vE '^(libc\.so\.6|libm\.so\.6|libstdc\+\+\.so\.6|libgcc_s\.so\.1|ld-linux-[a-z0-9_-]+\.so\.[0-9]+)$' || true)
if [ -n "$unexpected" ]; then
    echo "dist: $built needs shared libraries a friend's machine may not have:" >&2
    printf '  %s\n' $unexpected >&2
    exit 1
fi

version=$("$built" --version)
name="turf-$version-linux-$(uname -m)"
mkdir -p dist
# Without symbols: two thirds of the size. A crash still prints Swift's message, file and line.
strip -o "dist/$name.tmp" "$built"
mv -f "dist/$name.tmp" "dist/$name"
(cd dist && sha256sum "$name" >"$name.sha256")
glibc=$(objdump -T "dist/$name" | grep -oE 'GLIBC_[0-9.]+' | sort -uV | tail -1)
echo "dist: dist/$name ($(($(stat -c %s "dist/$name") / 1024 / 1024)) MiB) and dist/$name.sha256"
echo "dist: needs $(printf '%s ' $needed)(newest symbol version: $glibc)"
