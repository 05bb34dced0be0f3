# A resource type defined by commands, loaded by `source = "./types/http-file.hcl"`.
# check prints a JSON array of versions on its last line; pull fetches one into $WORKDIR.
resource_type "http-file" {
  params = ["url", "name"]
  cache  = true
  check "shell" {
    cmd = "etag=$(curl -fsSI \"$param_url\" | awk 'tolower($1)==\"etag:\"{print $2}' | tr -d '\"\\r'); echo \"[{\\\"etag\\\":\\\"$etag\\\"}]\""
  }
  pull "shell" {
    cmd = "mkdir -p \"$param_name\" && curl -fsSL -o \"$param_name/file\" \"$param_url\""
  }
}
