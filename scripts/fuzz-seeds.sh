#!/bin/sh
# Writes the fuzz targets' seed inputs into DIR/<target>/, afresh: small archives made by
# GNU tar (plain, gzip, every header format, with the hostile names tar can be made to
# write) and the text and bytes of the other formats. Generated at each run, so nothing
# binary is committed. Targets that build their input with `arbitrary` get no seeds.
#
#   scripts/fuzz-seeds.sh DIR
set -eu

out=${1:?usage: scripts/fuzz-seeds.sh DIR}
rm -rf "$out"
mkdir -p "$out"

# seed TARGET NAME: the seed's bytes from stdin.
seed() {
    mkdir -p "$out/$1"
    cat >"$out/$1/$2"
}

# extract: archives. Reproducible: fixed times and owners, sorted, 512-byte records.
if tar --version 2>/dev/null | grep -q 'GNU tar'; then
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    mkdir -p "$work/tree/d/sub" "$work/tree/o" "$work/hostile/x" "$work/up/in"
    (
        cd "$work/tree"
        printf 'data' >d/f
        printf 'setuid' >d/suid
        chmod 4755 d/suid
        ln -s f d/s
        ln -s ../../canary d/out
        ln d/f d/h
        mkfifo d/p
        printf 'long' >"d/sub/$(printf '%0120d' 0)"
        printf '' >.wh.gone
        printf '' >o/.wh..wh..opq
    )
    tar_() { tar -b 1 --mtime=@1700000000 --owner=0 --group=0 --numeric-owner --sort=name "$@"; }
    for format in gnu pax ustar v7; do
        # ustar and v7 cannot hold the 120-byte name, v7 no FIFO either.
        case $format in
        ustar) set -- --exclude='./d/sub/0*' ;;
        v7) set -- --exclude='./d/sub/0*' --exclude=./d/p ;;
        pax) set -- --pax-option=delete=atime,delete=ctime ;;
        *) set -- ;;
        esac
        tar_ --format=$format "$@" -C "$work/tree" -cf "$work/$format.tar" .
        seed extract "tree-$format.tar" <"$work/$format.tar"
    done
    gzip -n -c "$work/gnu.tar" | seed extract tree-gnu.tar.gz
    gzip -n -c "$work/pax.tar" | seed extract tree-pax.tar.gz
    # A symlink out of the target, then a file written through it.
    (
        cd "$work/hostile"
        ln -s ../canary link
        printf 'pwned' >x/secret
    )
    tar_ --format=gnu -C "$work/hostile" --transform 's,^x/,link/,' -cf - link x/secret |
        seed extract through-symlink.tar
    # `..` and absolute names (-P keeps them).
    printf 'up' >"$work/up/f"
    (cd "$work/up/in" && tar_ --format=ustar -P -cf - ../f) | seed extract dotdot.tar
    tar_ --format=gnu -P -cf - "$work/up/f" | seed extract absolute.tar
fi

# deleted_files: the first byte chooses the limits (even: the defaults), then the JSON.
printf '0["a/f","a/sub","/file","link","abs","empty/"]' | seed deleted_files paths.json
printf '0["link/secret"]' | seed deleted_files through-symlink.json
printf '0["../canary/secret","a/../x"]' | seed deleted_files dotdot.json
printf '\041["a/sub/deep/h","up/canary"]' | seed deleted_files small-limits.json

# criu_stats: a stats-dump CRIU 4.2.1 wrote, and a stats-restore without the service magic.
printf '\100\131\020\125\006\063\011\127\042\000\000\000\012\040\010\212\003\020\300\305\006\030\264\002\040\104\050\057\060\000\070\041\100\000\110\000\120\010\130\010\140\000\150\000\160\000' |
    seed criu_stats stats-dump
printf '\006\063\011\127\012\000\000\000\022\010\010\001\030\005\040\007\050\003' |
    seed criu_stats stats-restore

# criu_images: tars of the CRIU images CRIU 4.2.1 wrote (the checkpoint crate's fixtures).
fixtures=$(dirname "$0")/../checkpoint/tests/fixtures/criu
for case in "$fixtures"/*/; do
    name=$(basename "$case")
    tar --format=ustar -C "$case" --exclude=config.json -cf - . | seed criu_images "$name.tar"
done
# checkpoint_forensics: the holder's images (memory and open files); checkpoint_input: the
# same as a checkpoint archive (CRIU's images in checkpoint/, config.dump and spec.dump
# beside them), plain and gzip.
holder="$fixtures/holder"
tar --format=ustar -C "$holder" -cf - . | seed checkpoint_forensics holder.tar
layout=$(mktemp -d)
mkdir "$layout/checkpoint"
cp "$holder"/*.img "$holder/stats-dump" "$layout/checkpoint/"
cp "$holder/config.dump" "$holder/spec.dump" "$layout/"
tar --format=ustar --sort=name -C "$layout" -cf - . | seed checkpoint_input holder.tar
gzip -n -c "$out/checkpoint_input/holder.tar" | seed checkpoint_input holder.tar.gz
rm -rf "$layout"

# criu_log: the first byte is how many errors to keep ('5'), then lines of a real dump.log.
seed criu_log dump.log <<'EOF'
5(00.004407) Error (criu/tun.c:85): tun: Unable to create tun: No such file or directory
(00.152000) Dumping path for 3 fd via self 12 [/]
(00.152017) Error (criu/sk-inet.c:200): inet: Connected TCP socket, consider using --tcp-established option.
(00.152022) Error (criu/cr-dump.c:1545): Dump files (pid: 84) failed with -1
(10.0) Error (compel/src/lib/infect.c:160): Unseizable non-zombie 423 found, state D, err -1/4
(00.231148) Error (criu/cr-dump.c:1975): Dumping FAILED.
EOF

# snapshot_filter: one filter string per line.
seed snapshot_filter filters <<'EOF'
name==sha256:abc,kind==committed
parent!=x,labels."containerd.io/gc.root"
labels.x~=/^1$/,name~="a.c",name~=|k\/1|
name=="a b\t\"c\"\u00e9\x41\101",kind!=view
EOF

# checkpoint_metadata: a config.dump and a spec.dump as containerd's CRI wrote them.
printf '%s' '{"id":"4be9","name":"workload","rootfsImage":"docker.io/revive/busybox:latest","rootfsImageRef":"sha256:eabc","rootfsImageName":"docker.io/revive/busybox:latest","runtime":"io.containerd.revive.v2","createdTime":"2026-12-01T06:58:14Z","restored":false}' |
    seed checkpoint_metadata config.dump
printf '%s' '{"process":{"args":["sh"],"cwd":"/","terminal":false},"linux":{"namespaces":[{"type":"pid"},{"type":"network","path":"/proc/7/ns/net"}],"maskedPaths":["/proc/kcore"]},"mounts":[{"destination":"/proc","type":"proc","source":"proc"}]}' |
    seed checkpoint_metadata spec.dump

# reconcile: the new container's spec, a NUL, the checkpoint's spec.dump.
{
    printf '%s' '{"process":{"args":[],"terminal":false},"linux":{"namespaces":[{"type":"pid"},{"type":"mount"}]},"mounts":[{"destination":"/proc","type":"proc"}]}'
    printf '\0'
    printf '%s' '{"process":{"args":["sh"],"terminal":false},"linux":{"namespaces":[{"type":"pid"},{"type":"mount"}],"maskedPaths":["/proc/keys"]},"mounts":[{"destination":"/proc","type":"proc"},{"destination":"/dev/mqueue","type":"mqueue"},{"destination":"/etc/hosts","type":"bind","source":"/x"}]}'
} | seed reconcile specs

# image_documents: a media type byte (0 sniffs, 1 OCI index, 2 OCI manifest, 4 Docker
# manifest), an architecture byte (0 amd64, 1 arm64), the target, a NUL, the config.
d1=sha256:$(printf '%064d' 1)
d2=sha256:$(printf '%064d' 2)
d3=sha256:$(printf '%064d' 3)
{
    printf '\001\000'
    printf '%s' "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\",\"manifests\":[{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"$d1\",\"size\":400,\"platform\":{\"architecture\":\"amd64\",\"os\":\"linux\"}},{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"$d2\",\"size\":400,\"platform\":{\"architecture\":\"arm64\",\"os\":\"linux\",\"variant\":\"v8\"}}]}"
} | seed image_documents index
manifest="{\"schemaVersion\":2,\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"$d1\",\"size\":500},\"layers\":[{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"$d2\",\"size\":900},{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\",\"digest\":\"$d3\",\"size\":20}]}"
config="{\"architecture\":\"amd64\",\"os\":\"linux\",\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"$d2\",\"$d3\"]}}"
{
    printf '\002\000%s' "$manifest"
    printf '\0%s' "$config"
} | seed image_documents manifest
{
    printf '\000\000%s' "$manifest"
    printf '\0%s' "$config"
} | seed image_documents sniffed

# oci_archive: OCI image archives as `ctr images export` writes them (oci-layout,
# index.json, blobs/sha256/<hex>), with an image of one gzip layer, in three tar formats.
if tar --version 2>/dev/null | grep -q 'GNU tar' && command -v sha256sum >/dev/null; then
    oci=$(mktemp -d)
    mkdir -p "$oci/layer" "$oci/image/blobs/sha256"
    printf 'hello' >"$oci/layer/greeting"
    # blob FILE: stores FILE as a blob, prints `"digest":"sha256:<hex>","size":<n>`.
    blob() {
        hex=$(sha256sum "$1" | cut -d' ' -f1)
        cp "$1" "$oci/image/blobs/sha256/$hex"
        printf '"digest":"sha256:%s","size":%s' "$hex" "$(wc -c <"$1" | tr -d ' ')"
    }
    tar -b 1 --mtime=@1700000000 --owner=0 --group=0 --numeric-owner -C "$oci/layer" -cf - greeting |
        gzip -n >"$oci/layer.tar.gz"
    diff_id=$(gzip -dc "$oci/layer.tar.gz" | sha256sum | cut -d' ' -f1)
    printf '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
        "$diff_id" >"$oci/config.json"
    printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json",%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip",%s}]}' \
        "$(blob "$oci/config.json")" "$(blob "$oci/layer.tar.gz")" >"$oci/manifest.json"
    printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json",%s,"annotations":{"io.containerd.image.name":"docker.io/revive/seed:1"}}]}' \
        "$(blob "$oci/manifest.json")" >"$oci/image/index.json"
    printf '{"imageLayoutVersion":"1.0.0"}' >"$oci/image/oci-layout"
    for format in gnu pax ustar; do
        tar -b 1 --mtime=@1700000000 --owner=0 --group=0 --numeric-owner --sort=name \
            --format=$format -C "$oci/image" -cf - . | seed oci_archive "image-$format.tar"
    done
    rm -rf "$oci"
fi
