#!/usr/bin/env bash
# Installs a packed gnttab tarball into an empty folder and uses it as the README
# says, with every Node given: the CLI (demo, dump of a .ts scenario, explore of the
# racy-revoke example and its replay, attack of the leaky-backend example, `gnttab run`
# of the ring example's .ts frontend and backend), a plain .mjs consumer of the host
# example, a .ts guest in a worker; the same .ts guests, scenario and spawn from a
# folder of npm init's "type": "commonjs" (cjs/); then a strict TypeScript
# consumer (node16 resolution, @types/node) under tsc --noEmit.
#   test/consumer/check.sh gnttab-0.1.0.tgz [dir-with-a-node-binary ...]
# With no directory, the node on PATH is used.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
tgz="$(realpath "$1")"
shift
nodes=("$@")
[ ${#nodes[@]} -eq 0 ] && nodes=("$(dirname "$(command -v node)")")

work="$(mktemp -d "${TMPDIR:-/tmp}/gnttab-consumer-XXXXXX")"
trap 'rm -rf "$work"' EXIT
cd "$work"
npm init -y >/dev/null
npm pkg set type=module
npm install --no-audit --no-fund --loglevel=error "$tgz" '@types/node@^20.19.0'
cp "$here"/{readme-host.mjs,check-demo.mjs,check-readme-host.mjs,spawn-ts.mjs,guest.ts,typed.ts,tsconfig.json} .
cp "$root/examples/scenario.ts" scenario.ts
cp "$root/examples/racy-revoke/scenario.ts" racy-revoke.ts
cp "$root/examples/attack/leaky-backend.ts" leaky-backend.ts
cp -r "$root/examples/ring" ring
# TypeScript user modules load as ES modules in a folder that is not "type": "module" too.
mkdir cjs
echo '{ "type": "commonjs" }' >cjs/package.json
cp -r ring scenario.ts spawn-ts.mjs guest.ts cjs/
echo "installed: $(du -sh node_modules/gnttab | cut -f1) in node_modules/gnttab, $(ls node_modules | wc -l) packages"

for dir in "${nodes[@]}"; do
  export PATH="$dir:$PATH"
  echo "== $(node --version) ($(command -v node))"
  npx gnttab --version
  npx gnttab demo --size 1M --json | node check-demo.mjs
  node readme-host.mjs | node check-readme-host.mjs
  npx gnttab dump scenario.ts | grep -q 'invariants: all hold'
  echo 'gnttab dump scenario.ts: ok'
  node spawn-ts.mjs
  # The explorer finds the shipped racy revoke (exit 1) and its token replays it.
  if out="$(npx gnttab explore racy-revoke.ts --schedules 500)"; then
    echo "gnttab explore racy-revoke.ts found nothing: $out"; exit 1
  fi
  grep -q '^FAILED (check)' <<<"$out"
  token="$(sed -n 's/^replay: --replay //p' <<<"$out")"
  if npx gnttab explore racy-revoke.ts --replay "$token" >/dev/null; then
    echo "gnttab explore --replay $token did not reproduce the failure"; exit 1
  fi
  npx gnttab explore revoke --schedules 50 | grep -q 'no failure found'
  echo 'gnttab explore racy-revoke.ts, --replay, revoke: ok'
  # The malicious peer reports the shipped leaky backend (exit 1); the built-in ring passes.
  if out="$(npx gnttab attack leaky-backend.ts --as frontend --moves 40)"; then
    echo "gnttab attack leaky-backend.ts found nothing: $out"; exit 1
  fi
  grep -q 'leaked-mappings' <<<"$out"
  npx gnttab attack ring --as frontend --moves 40 --json | node -e \
    'let s="";process.stdin.on("data",(d)=>s+=d).on("end",()=>{if(!JSON.parse(s).ok)process.exit(1)})'
  echo 'gnttab attack leaky-backend.ts, ring: ok'
  npx gnttab run ring/frontend.ts ring/backend.ts -- 20 >run.txt || { cat run.txt; exit 1; }
  grep -q '^left behind: nothing' run.txt && grep -q '^invariants: all hold' run.txt
  echo 'gnttab run ring/frontend.ts ring/backend.ts (the ring example, .ts guests): ok'
  npx gnttab run cjs/ring/frontend.ts cjs/ring/backend.ts -- 20 >run.txt || { cat run.txt; exit 1; }
  grep -q '^left behind: nothing' run.txt && grep -q '^invariants: all hold' run.txt
  npx gnttab dump cjs/scenario.ts | grep -q 'invariants: all hold'
  node cjs/spawn-ts.mjs
  echo 'in a "type": "commonjs" folder: gnttab run of .ts guests, dump of a .ts scenario, spawn of a .ts guest: ok'
done

node "$root/node_modules/typescript/bin/tsc" -p tsconfig.json
echo "tsc --noEmit over the strict TypeScript consumer (node16, @types/node): ok"
