# Flattens one JSON document into lines `path=value`: objects' keys and arrays' indexes
# joined by dots (`ethernets.nic0.addresses.0=198.51.100.2/24`), strings decoded, newlines
# in strings written as byte \001 (so that one value stays on one line). The tiny guest's
# only JSON reader; busybox awk, no extensions.
function fail(msg) { print "json.awk: " msg > "/dev/stderr"; exit 1 }
function ws() { while (pos <= len && index(" \t\r\n", substr(s, pos, 1)) > 0) pos++ }
function hex(h,   i, c, n) {
  n = 0
  for (i = 1; i <= length(h); i++) { c = index("0123456789abcdef", tolower(substr(h, i, 1))) - 1; n = n * 16 + c }
  return n
}
function str(   out, c, e, n) {
  pos++ # the opening quote
  out = ""
  while (pos <= len) {
    c = substr(s, pos, 1)
    if (c == "\"") { pos++; return out }
    if (c == "\\") {
      e = substr(s, pos + 1, 1); pos += 2
      if (e == "n") out = out "\001"
      else if (e == "t") out = out "\t"
      else if (e == "r") out = out "\r"
      else if (e == "b" || e == "f") out = out ""
      else if (e == "u") { n = hex(substr(s, pos, 4)); pos += 4; out = out (n < 128 ? sprintf("%c", n) : "?") }
      else out = out e
      continue
    }
    out = out c; pos++
  }
  fail("unterminated string")
}
function value(path,   c, k, i, v) {
  ws(); c = substr(s, pos, 1)
  if (c == "{") {
    pos++; ws()
    if (substr(s, pos, 1) == "}") { pos++; return }
    while (1) {
      ws(); if (substr(s, pos, 1) != "\"") fail("expected a key at " pos)
      k = str(); ws()
      if (substr(s, pos, 1) != ":") fail("expected : at " pos)
      pos++
      value(path == "" ? k : path "." k)
      ws(); c = substr(s, pos, 1); pos++
      if (c == "}") return
      if (c != ",") fail("expected , or } at " pos)
    }
  }
  if (c == "[") {
    pos++; ws(); i = 0
    if (substr(s, pos, 1) == "]") { pos++; return }
    while (1) {
      value(path == "" ? i : path "." i); i++
      ws(); c = substr(s, pos, 1); pos++
      if (c == "]") return
      if (c != ",") fail("expected , or ] at " pos)
    }
  }
  if (c == "\"") { v = str(); print path "=" v; return }
  v = ""
  while (pos <= len && index(",}] \t\r\n", substr(s, pos, 1)) == 0) { v = v substr(s, pos, 1); pos++ }
  if (v == "") fail("unexpected " c " at " pos)
  print path "=" v
}
{ s = s $0 "\n" }
END {
  # A first line `#cloud-config` is a comment to YAML; skip it.
  if (substr(s, 1, 1) == "#") s = substr(s, index(s, "\n") + 1)
  len = length(s); pos = 1
  value("")
}
