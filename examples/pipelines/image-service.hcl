# A database for the tests, from a container image: `service "NAME" { image = … }` starts the
# container before the steps after it, waits until it is ready and removes it when the job ends,
# whatever the outcome. Later steps reach it through SERVICE_DB_HOST, SERVICE_DB_PORT,
# SERVICE_DB_ADDR and SERVICE_DB_CONTAINER.
#
# The image is the local PostgreSQL test image (`ci/postgres-test-image.sh` builds it without a
# registry); `postgres:16` from Docker Hub works the same way.

job "integration" {
  service "db" {
    image = "pipewright-test/postgres:latest"
    ports = [5432]
    env   = { POSTGRES_PASSWORD = "test" }
    # The image has a HEALTHCHECK; without one, `health` runs inside the container, and
    # without that the first port must accept connections.
    health        = "pg_isready -h 127.0.0.1 -U postgres"
    ready_timeout = "60s"
  }

  task "migrate-and-query" {
    env = { PGPASSWORD = "test" }
    run "shell" {
      cmd = <<-SH
        psql -h "$SERVICE_DB_HOST" -p "$SERVICE_DB_PORT" -U postgres -v ON_ERROR_STOP=1 \
          -c 'create table t (n int)' -c 'insert into t values (42)' -Atc 'select n from t'
      SH
    }
  }
}
