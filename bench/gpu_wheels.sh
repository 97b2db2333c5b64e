#!/usr/bin/env bash
# The pure-Python and small wheels the GPU machine lacks (it has JAX with CUDA, NumPy, pandas,
# scikit-learn, matplotlib, Jinja2, h5py, pytest; no TensorFlow and no registry), for Python 3.12,
# into .whl/ (git-excluded), and the CIFAR-10 zip into .data/: what bench/gpu_check.sh installs and
# reads there. Run here, in the repository root, before the device call.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .git/info && touch .git/info/exclude
grep -qx '/.whl/' .git/info/exclude || echo /.whl/ >> .git/info/exclude
grep -qx '/.data/' .git/info/exclude || echo /.data/ >> .git/info/exclude
mkdir -p .whl .data
# The versions requirements.lock pins, so the GPU run trains what CI tests.
pinned() { grep -i "^$1==" requirements.lock; }
for name in keras keras-tuner kt-legacy namex optree optuna alembic colorlog SQLAlchemy Mako greenlet; do
  python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "$(pinned "$name")"
done
cp -n ../shared/data/cifar10-train-jpeg.zip .data/
du -sh .whl .data
