#!/bin/sh
# make_lossy_refs.sh CORPUS OUTDIR - writes, for every frame of a lossy
# transfer syntax listed in CORPUS/REFERENCE.tsv, the reference decoder's
# canonical frame (interleaved, little endian, Bits Allocated container) to
# OUTDIR/<path with / replaced by _>.<frame>.raw.
#
# Decoders (Debian 12): gdcmconv --raw (libgdcm-tools) for JPEG, JPEG-LS and
# J2K; opj_decompress (libopenjp2-tools) for HTJ2K; djxl (libjxl-tools) for
# JPEG XL. Codestreams and native frames are cut out of the files with
# yy-dump ($YY_DUMP, default $YY_BUILD_ROOT/yy-dump).
#
# test_decode_corpus runs it: a lossy frame whose hash differs from
# REFERENCE.tsv (decoder builds may round differently, e.g. libjxl's SIMD
# paths) passes when no sample differs by more than 1 from these bytes.
# A missing tool skips its frames (they must then match exactly).
set -u
corpus=$1
out=$2
dump=${YY_DUMP:-${YY_BUILD_ROOT:-.}/yy-dump}
[ -x "$dump" ] || { echo "make_lossy_refs: no yy-dump at $dump" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

have() { command -v "$1" >/dev/null 2>&1; }

# field NAME JSON - a number from yy-dump layout output
field() { printf '%s\n' "$2" | sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p"; }

# pnm_body FILE BYTES - the last BYTES bytes (the samples) of a PNM file,
# 16-bit samples swapped from big to little endian
pnm_body() {
    if [ "$3" -gt 1 ]; then tail -c "$2" "$1" | dd conv=swab status=none
    else tail -c "$2" "$1"; fi
}

n=0
lastfile=
# manifest: path -> transfer syntax
awk -F'\t' 'NR > 1 { print $1 "\t" $5 }' "$corpus/MANIFEST.tsv" > "$tmp/ts.tsv"
awk -F'\t' 'NR > 1 { print $1 "\t" $2 }' "$corpus/REFERENCE.tsv" |
while IFS="$(printf '\t')" read -r path frame; do
    ts=$(awk -F'\t' -v p="$path" '$1 == p { print $2; exit }' "$tmp/ts.tsv")
    case "$ts" in
    1.2.840.10008.1.2.4.50|1.2.840.10008.1.2.4.51|1.2.840.10008.1.2.4.81|1.2.840.10008.1.2.4.91)
        kind=gdcm; have gdcmconv || continue ;;
    1.2.840.10008.1.2.4.203)
        kind=opj; have opj_decompress || continue ;;
    1.2.840.10008.1.2.4.110|1.2.840.10008.1.2.4.111|1.2.840.10008.1.2.4.112)
        kind=jxl; have djxl || continue ;;
    *) continue ;;
    esac
    src="$corpus/$path"
    dst="$out/$(printf '%s' "$path" | tr '/' '_').$frame.raw"
    layout=$("$dump" layout "$src") || continue
    rows=$(field rows "$layout"); cols=$(field cols "$layout")
    spp=$(field spp "$layout"); ba=$(field bits_alloc "$layout")
    nb=$(( ba <= 8 ? 1 : ba / 8 ))
    bytes=$(( rows * cols * spp * nb ))
    case $kind in
    gdcm)
        if [ "$path" != "$lastfile" ]; then
            gdcmconv --raw "$src" "$tmp/raw.dcm" 2>/dev/null || continue
            lastfile=$path
        fi
        "$dump" frame "$tmp/raw.dcm" "$frame" > "$dst" 2>/dev/null || rm -f "$dst" ;;
    opj)
        "$dump" frame "$src" "$frame" > "$tmp/f.j2c" 2>/dev/null || continue
        ext=pgm; [ "$spp" = 3 ] && ext=ppm
        opj_decompress -quiet -i "$tmp/f.j2c" -o "$tmp/f.$ext" >/dev/null 2>&1 || continue
        pnm_body "$tmp/f.$ext" "$bytes" "$nb" > "$dst" ;;
    jxl)
        "$dump" frame "$src" "$frame" > "$tmp/f.jxl" 2>/dev/null || continue
        ext=pgm; [ "$spp" = 3 ] && ext=ppm
        djxl "$tmp/f.jxl" "$tmp/f.$ext" >/dev/null 2>&1 || continue
        pnm_body "$tmp/f.$ext" "$bytes" "$nb" > "$dst" ;;
    esac
    n=$((n + 1))
done
exit 0
