#!/bin/sh
# Builds the local test image `pipewright-test/busybox:latest` from the host's busybox-static
# (no registry needed). Usage: ci/docker-test-image.sh [busybox-binary]
set -eu
BUSYBOX="${1:-/bin/busybox}"
if ! file_is_static=$(ldd "$BUSYBOX" 2>&1); then :; fi
case "$file_is_static" in
  *"not a dynamic executable"*|*"statically linked"*) ;;
  *) echo "error: $BUSYBOX is not statically linked (apt-get install busybox-static)" >&2; exit 1 ;;
esac
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/bin" "$root/tmp" "$root/workdir" "$root/etc"
cp "$BUSYBOX" "$root/bin/busybox"
for app in $("$BUSYBOX" --list); do
  [ "$app" = busybox ] || ln -sf busybox "$root/bin/$app"
done
echo "root:x:0:0:root:/:/bin/sh" > "$root/etc/passwd"
echo "nobody:x:65534:65534:nobody:/:/bin/sh" >> "$root/etc/passwd"
tar -C "$root" -c . | docker import -c 'ENV PATH=/bin' -c 'CMD ["/bin/sh"]' - pipewright-test/busybox:latest >/dev/null
echo "built pipewright-test/busybox:latest"
