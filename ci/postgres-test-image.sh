#!/bin/sh
# Builds the local test image `pipewright-test/postgres:latest` from the host's Debian PostgreSQL
# server (no registry needed): its binaries, the shared libraries they load, its share directory
# and an entrypoint that starts a fresh cluster on 0.0.0.0:5432 as user `postgres`.
# Auth is trust, or password (scram) when POSTGRES_PASSWORD is set. The image has a HEALTHCHECK
# (pg_isready). Usage: ci/postgres-test-image.sh [/usr/lib/postgresql/VERSION]
set -eu
IMAGE=pipewright-test/postgres:latest
PG="${1:-$(ls -d /usr/lib/postgresql/*/ 2>/dev/null | sort -V | tail -n 1)}"
PG="${PG%/}"
if [ -z "$PG" ] || [ ! -x "$PG/bin/postgres" ]; then
  echo "error: no PostgreSQL server under /usr/lib/postgresql (apt-get install postgresql)" >&2
  exit 1
fi
VERSION=$(basename "$PG")
SHARE=/usr/share/postgresql/$VERSION
[ -d "$SHARE" ] || { echo "error: $SHARE is missing" >&2; exit 1; }

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
root="$ctx/rootfs"
mkdir -p "$root/tmp" "$root/etc" "$root/bin" "$root$PG" "$root/usr/share/postgresql"
chmod 1777 "$root/tmp"

# The server and its tools, the extension libraries initdb loads (no JIT: it needs LLVM).
cp -a "$PG/bin" "$root$PG/"
mkdir -p "$root$PG/lib"
for f in "$PG"/lib/*.so; do
  case "$(basename "$f")" in llvmjit*) continue ;; esac
  cp -a "$f" "$root$PG/lib/"
done
cp -a "$SHARE" "$root/usr/share/postgresql/"
[ -d /usr/share/zoneinfo ] && cp -a /usr/share/zoneinfo "$root/usr/share/"
cp -L /bin/sh "$root/bin/sh"

# Every shared library (and the dynamic loader) those binaries need, at the same paths.
for f in "$root/bin/sh" "$root$PG"/bin/* "$root$PG"/lib/*.so; do
  ldd "$f" 2>/dev/null | awk '/=> \// { print $3 } /^\t\// { print $1 }'
done | sort -u | while read -r lib; do
  [ -e "$root$lib" ] || { mkdir -p "$root$(dirname "$lib")"; cp -L "$lib" "$root$lib"; }
done

cat > "$root/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
postgres:x:999:999:PostgreSQL:/tmp:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/sh
PASSWD
cat > "$root/etc/group" <<'GROUP'
root:x:0:
postgres:x:999:
nogroup:x:65534:
GROUP

cat > "$root/entrypoint.sh" <<ENTRY
#!/bin/sh
# A fresh cluster on every start; extra arguments are passed to postgres (-c name=value).
set -eu
PATH=$PG/bin:/bin
PGDATA=/tmp/pgdata
auth=trust
pwopt=""
if [ -n "\${POSTGRES_PASSWORD:-}" ]; then
  printf '%s\n' "\$POSTGRES_PASSWORD" > /tmp/pwfile
  auth=scram-sha-256
  pwopt=--pwfile=/tmp/pwfile
fi
initdb -D "\$PGDATA" -U "\${POSTGRES_USER:-postgres}" -A "\$auth" \$pwopt -E UTF8 --locale=C --no-sync >/tmp/initdb.log 2>&1 || { cat /tmp/initdb.log >&2; exit 1; }
echo "host all all 0.0.0.0/0 \$auth" >> "\$PGDATA/pg_hba.conf"
echo "host all all ::/0 \$auth" >> "\$PGDATA/pg_hba.conf"
if [ -n "\${POSTGRES_DB:-}" ]; then
  postgres --single -D "\$PGDATA" -c jit=off postgres >/dev/null <<SQL
CREATE DATABASE "\$POSTGRES_DB";
SQL
fi
exec postgres -D "\$PGDATA" -c listen_addresses='*' -c unix_socket_directories=/tmp \\
  -c fsync=off -c jit=off "\$@"
ENTRY
chmod 755 "$root/entrypoint.sh"

cat > "$ctx/Dockerfile" <<DOCKERFILE
FROM scratch
COPY rootfs/ /
ENV PATH=$PG/bin:/bin LANG=C TZ=UTC
USER postgres
EXPOSE 5432
HEALTHCHECK --interval=1s --timeout=5s --retries=60 CMD ["$PG/bin/pg_isready", "-q", "-h", "127.0.0.1", "-p", "5432"]
ENTRYPOINT ["/entrypoint.sh"]
DOCKERFILE
# The classic builder: a FROM scratch context needs nothing from a registry.
if ! out=$(DOCKER_BUILDKIT=0 docker build -q -t "$IMAGE" "$ctx" 2>&1); then
  echo "$out" >&2
  exit 1
fi
echo "built $IMAGE (PostgreSQL $VERSION)"
