#!/usr/bin/env bash
# Fetch the prebuilt llama.cpp shared libraries and the matching llama.cpp
# source headers from the npm registry (the only registry reachable here).
#   - @node-llama-cpp/linux-x64@3.22.1: libllama.v0.5.0.so, libggml*.so (CPU variants)
#   - node-llama-cpp@3.22.1: llama/gitRelease.bundle, a git bundle of the exact
#     llama.cpp tree those libraries were built from (we need include/llama.h
#     and ggml/include/*.h to compile against the real struct layouts).
# Usage: LCPP_DIR=/tmp/lcpp ./fetch.sh       (default LCPP_DIR=/tmp/lcpp)
set -euo pipefail
NLC_VERSION=${NLC_VERSION:-3.22.1}
LCPP_DIR=${LCPP_DIR:-/tmp/lcpp}
mkdir -p "$LCPP_DIR"
cd "$LCPP_DIR"

if [ ! -f "package/bins/linux-x64/libllama.v0.5.0.so" ]; then
    npm pack "@node-llama-cpp/linux-x64@${NLC_VERSION}"
    tar xzf "node-llama-cpp-linux-x64-${NLC_VERSION}.tgz"   # -> package/bins/linux-x64/
fi
if [ ! -f "nlc/package/llama/gitRelease.bundle" ]; then
    mkdir -p nlc
    (cd nlc && npm pack "node-llama-cpp@${NLC_VERSION}" && tar xzf "node-llama-cpp-${NLC_VERSION}.tgz")
fi
if [ ! -f "llama.cpp-src/include/llama.h" ]; then
    rm -rf llama.cpp-src
    git -c advice.detachedHead=false clone -q nlc/package/llama/gitRelease.bundle llama.cpp-src
fi
cat package/bins/linux-x64/_nlcBuildMetadata.json; echo
cat nlc/package/llama/binariesGithubRelease.json
echo "llama.cpp source HEAD: $(git -C llama.cpp-src rev-parse HEAD)"
echo "libs:    $LCPP_DIR/package/bins/linux-x64"
echo "headers: $LCPP_DIR/llama.cpp-src/include $LCPP_DIR/llama.cpp-src/ggml/include"
