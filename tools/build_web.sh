#!/usr/bin/env bash
# Builds the web page (web/): the tessera-web crate for wasm32 and its JavaScript bindings.
#
#   tools/build_web.sh          -> web/pkg/tessera_web.js and tessera_web_bg.wasm, and the
#                                  bundled models' files in web/pkg/models/ (the page fetches
#                                  them from its own folder)
#
# Then serve web/ over HTTP (WebGPU needs a secure context: http://127.0.0.1 or https) and
# open it, e.g. `python3 -m http.server -d web 8000` and http://127.0.0.1:8000/.
# Needs the wasm32-unknown-unknown target (`rustup target add wasm32-unknown-unknown`) and
# wasm-bindgen-cli of the same version as the wasm-bindgen crate in Cargo.lock
# (`cargo install wasm-bindgen-cli --version 0.2.130`); nothing is downloaded here.
set -euo pipefail
cd "$(dirname "$0")/.."

want=$(awk '/^name = "wasm-bindgen"$/ {getline; gsub(/[^0-9.]/, ""); print; exit}' Cargo.lock)
have=$(wasm-bindgen --version 2>/dev/null | awk '{print $2}') || true
if [ "$have" != "$want" ]; then
    echo "tools/build_web.sh: wasm-bindgen-cli ${have:-is not installed}; this build needs $want:" >&2
    echo "    cargo install wasm-bindgen-cli --version $want" >&2
    exit 1
fi
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
    echo "tools/build_web.sh: the wasm32 target is missing: rustup target add wasm32-unknown-unknown" >&2
    exit 1
fi

cargo build --release -p tessera-web --target wasm32-unknown-unknown
wasm-bindgen --target web --no-typescript --out-dir web/pkg \
    target/wasm32-unknown-unknown/release/tessera_web.wasm
mkdir -p web/pkg/models/stdlib-byte web/pkg/models/digits-unet
cp assets/models/stdlib-byte/{config.json,model.safetensors,tokenizer.json} web/pkg/models/stdlib-byte/
cp assets/models/digits-unet/{config.json,diffusion_pytorch_model.safetensors,scheduler_config.json} \
    web/pkg/models/digits-unet/
ls -l web/pkg web/pkg/models/*
