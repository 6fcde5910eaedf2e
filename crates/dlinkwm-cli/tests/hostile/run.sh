#!/usr/bin/env bash
# The hostile-plugin table of docs/security.md, against the `dlinkwm` CLI with default settings
# (256 MiB memory, 5 s timeout): what each attack ends in, its wall time and the peak RSS.
# Usage: crates/dlinkwm-cli/tests/hostile/run.sh [path/to/dlinkwm]
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dlinkwm="${1:-${CARGO_TARGET_DIR:-$HOME/.cache/dlinkwm/target}/release/dlinkwm}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp "$here"/*.wat "$work"/
cd "$work"
printf '[plugins."huge_name.wat"]\nhost_methods = []\n[engine]\ncache = false\n' > dlinkwm.toml
printf '[engine]\ncache = false\ngc = true\n' > gc.toml
# ~1M nested blocks (3 MB), as a binary.
python3 - <<'PY'
n = 1_000_000
body = b"\x00" + b"\x02\x40" * n + b"\x0b" * (n + 1)
def leb(v):
    out = bytearray()
    while True:
        b = v & 0x7f; v >>= 7
        if v == 0: out.append(b); return bytes(out)
        out.append(b | 0x80)
code = leb(1) + leb(len(body)) + body
m = b"\0asm\x01\0\0\0" + bytes([1, 4, 1, 0x60, 0, 0]) + bytes([3, 2, 1, 0]) + bytes([7, 7, 1, 3]) + b"run" + bytes([0, 0]) + b"\x0a" + leb(len(code)) + code
open("nested.wasm", "wb").write(m)
PY
row() {
  local name="$1"; shift
  local start end rss status
  start=$(date +%s.%N)
  /usr/bin/time -f '%M' -o time.txt "$dlinkwm" "$@" >out.txt 2>err.txt
  status=$?
  end=$(date +%s.%N)
  rss=$(tail -1 time.txt)
  printf '| %s | exit %s | %.2f s | %s MB | %s B stderr | %s |\n' "$name" "$status" "$(echo "$end - $start" | bc)" "$((rss / 1024))" "$(wc -c <err.txt)" "$(tail -1 err.txt | cut -c1-150)"
}
echo "| attack | outcome | wall | peak RSS | stderr | message |"
echo "|---|---|---|---|---|---|"
row "16 memories x 250 MiB" call many_memories.wat run
row "GC heap beside a full memory" call gc_heap.wat run
row "the same, [engine] gc = true" --config gc.toml call gc_heap.wat run
row "poll_oneoff, 584 years" call poll_forever.wat run
row "poll_oneoff, 20 s" call poll_forever.wat sleep20
row "1M nested blocks" call nested.wasm run
row "200 MiB method names x 20, denied" call huge_name.wat run
